"""Reads Kafka topics to their end with confluent-kafka (librdkafka) and
isolation.level=read_committed, printing one JSON line per record:
{"topic","partition","offset","timestamp","key","value"(base64),"headers"}.

usage: librdkafka_read.py BOOTSTRAP TOPIC[,TOPIC...] [TIMEOUT_S]
"""
import base64
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition


def main():
    bootstrap, topics = sys.argv[1], sys.argv[2].split(",")
    timeout_s = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sluice-test-reader",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    metadata = consumer.list_topics(timeout=10)
    partitions = []
    for topic in topics:
        if topic not in metadata.topics:
            raise SystemExit("topic %s does not exist" % topic)
        partitions += [TopicPartition(topic, p, 0) for p in sorted(metadata.topics[topic].partitions)]
    consumer.assign(partitions)
    at_end = set()
    deadline = time.monotonic() + timeout_s
    while len(at_end) < len(partitions):
        if time.monotonic() > deadline:
            raise SystemExit("timed out before the end of %d partitions" % (len(partitions) - len(at_end)))
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add((message.topic(), message.partition()))
                continue
            raise SystemExit("consumer error: %s" % message.error())
        key = message.key()
        print(json.dumps({"topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
                          "timestamp": message.timestamp()[1],
                          "key": None if key is None else key.decode(),
                          "value": base64.b64encode(message.value() or b"").decode(),
                          "headers": [[k, (v or b"").decode()] for k, v in (message.headers() or [])]}))
    consumer.close()


main()
