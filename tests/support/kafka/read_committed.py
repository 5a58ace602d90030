"""Reads Kafka topics back as a read_committed consumer sees them, printing one JSON
line per committed record: {"topic","partition","offset","key","value","headers"}.

The broker the tests run (tansu 0.6.0) stores transaction markers but does not report
aborted transactions in its fetch answers, so a client's own read_committed filter
would let aborted records through. This reader therefore applies the markers itself,
the way a Kafka broker and client do together: records of a transactional batch are
held per producer id and epoch until that producer's next control record, then emitted
on a commit marker and dropped on an abort marker; records of an open transaction are
never emitted. A batch from a newer epoch of the same producer id means the producer was
re-initialised (`init_transactions`), which aborts its transaction of the older epoch:
held records of older epochs are dropped then (Kafka's coordinator writes that abort
marker itself; tansu does not always). It uses kafka-python's consumer with a patched batch decoder that keeps
control batches instead of skipping them.

usage: read_committed.py BOOTSTRAP TOPIC[,TOPIC...] [TIMEOUT_S]
"""
import base64
import json
import sys

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer import fetcher
from kafka.consumer.fetcher import ConsumerRecord

MARK = "__sluice_test_batch"


def unpack_records(self, tp, records, key_deserializer, value_deserializer):
    batch = records.next_batch()
    while batch is not None:
        if not batch.validate_crc():
            raise RuntimeError("record batch at offset %s of %s failed its CRC" % (batch.base_offset, tp))
        if batch.magic != 2:
            raise RuntimeError("message format v%d: only v2 batches carry transactions" % batch.magic)
        if batch.is_control_batch:
            kind = "control"
        elif batch.is_transactional:
            kind = "txn"
        else:
            kind = "plain"
        for record in batch:
            if kind == "control":
                tag = "%s:%d:%d:%s" % (kind, batch.producer_id, batch.producer_epoch, "commit" if record.commit else "abort")
            else:
                tag = "%s:%d:%d" % (kind, batch.producer_id, batch.producer_epoch)
            headers = list(record.headers or []) + [(MARK, tag.encode())]
            self.next_fetch_offset = record.offset + 1
            yield ConsumerRecord(tp.topic, tp.partition, -1, record.offset, record.timestamp,
                                 record.timestamp_type, record.key, record.value, headers,
                                 None, -1, -1, -1)
        self.next_fetch_offset = batch.next_offset
        batch = records.next_batch()
    self.drain()


fetcher.Fetcher.PartitionRecords._unpack_records = unpack_records


def main():
    bootstrap, topics = sys.argv[1], sys.argv[2].split(",")
    timeout_s = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_uncommitted", consumer_timeout_ms=1000)
    partitions = []
    for topic in topics:
        found = consumer.partitions_for_topic(topic)
        if found is None:
            raise SystemExit("topic %s does not exist" % topic)
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    import time
    deadline = time.monotonic() + timeout_s
    pending = {tp: {} for tp in partitions}
    out = []
    done = {tp for tp in partitions if ends[tp] == 0}
    while len(done) < len(partitions):
        if time.monotonic() > deadline:
            raise SystemExit("timed out reading to the end offsets %s" % ends)
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                tag = dict(record.headers)[MARK].decode().split(":")
                headers = [(k, v) for k, v in record.headers if k != MARK]
                line = {"topic": tp.topic, "partition": tp.partition, "offset": record.offset,
                        "timestamp": record.timestamp,
                        "key": None if record.key is None else record.key.decode(),
                        "value": base64.b64encode(record.value or b"").decode(),
                        "headers": [[k, v.decode()] for k, v in headers]}
                if tag[0] == "plain":
                    out.append(line)
                    continue
                producer, epoch = int(tag[1]), int(tag[2])
                held = pending[tp]
                for (other, older) in [key for key in held if key[0] == producer and key[1] < epoch]:
                    del held[(other, older)]
                if tag[0] == "txn":
                    held.setdefault((producer, epoch), []).append(line)
                elif tag[3] == "commit":
                    out.extend(held.pop((producer, epoch), []))
                else:
                    held.pop((producer, epoch), None)
                if record.offset + 1 >= ends[tp]:
                    done.add(tp)
        # A batch may end past its last record (markers, or a broker's own arithmetic):
        # the fetch position says where the partition stands.
        for tp in partitions:
            if tp not in done and consumer.position(tp) >= ends[tp]:
                done.add(tp)
    for line in out:
        print(json.dumps(line))


main()
