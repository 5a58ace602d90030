//! Every limit in sluice, named with its unit last, each with the reason for its value.
//! Limits an operator may change are the defaults of configuration keys; the rest are
//! fixed by the protocol or the file format.

/// Default `[ingest] body_bytes_max`: SPEC §1 fixes 512 KiB as the default body limit.
pub const BODY_BYTES_MAX_DEFAULT: usize = 512 * 1024;
/// Bodies up to this size are validated without allocating: the validator's buffers are
/// warmed up for a worst-case document of this size at start. Single events are well
/// under 4 KiB and batches of 100 about 50 KiB; the 512 KiB worst case would keep about
/// 28 MiB resident per shard for a body almost nobody sends.
pub const VALIDATOR_WARM_BYTES: usize = 64 * 1024;
/// Default `[ingest] header_bytes_max`: request line plus headers; 16 KiB is nginx's
/// `large_client_header_buffers` scale and far above a signed request's ~400 bytes.
pub const HEADER_BYTES_MAX_DEFAULT: usize = 16 * 1024;
/// Default `[ingest] headers_count_max`: producers send about ten headers.
pub const HEADERS_COUNT_MAX_DEFAULT: usize = 64;
/// Range of `[ingest] header_bytes_max`: a signed request's head is ~400 bytes; 1 MiB
/// is far beyond any real one.
pub const HEADER_BYTES_MAX_FLOOR: usize = 1024;
pub const HEADER_BYTES_MAX_CEILING: usize = 1024 * 1024;
/// Range of `[ingest] body_bytes_max`: a batch of 1000 events of 64 KiB each fits the
/// ceiling; the quarantine's record format is sized for it (`QUARANTINE_PAYLOAD_BYTES_MAX`).
pub const BODY_BYTES_MAX_FLOOR: usize = 1024;
pub const BODY_BYTES_MAX_CEILING: usize = 64 * 1024 * 1024;
/// `[ingest] shards` at most: far above any single host's core count.
pub const SHARDS_MAX: usize = 1024;
/// Default `[ingest] listen` (SPEC §4).
pub const INGEST_LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// Default `[admin] listen` (SPEC §4): loopback, off the data plane.
pub const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:9090";
/// Default `[storage] data_dir` (SPEC §4), relative to the working directory.
pub const DATA_DIR_DEFAULT: &str = "./sluice-data";
/// Hard ceiling on `headers_count_max`: the parser's header array lives on the stack.
pub const HEADERS_COUNT_MAX_CEILING: usize = 256;
/// Decimal digits of a `Content-Length`: 15 digits (just under 1 PB) cannot overflow a
/// `u64` while parsing, and any longer value is far beyond every body limit anyway.
pub const CONTENT_LENGTH_DIGITS_MAX: usize = 15;
/// Hex digits of a chunk size: 8 digits reach 4 GiB, above the largest configurable
/// `body_bytes_max` (64 MiB), so a longer size (leading zeros included) is refused as
/// malformed before it can overflow.
pub const CHUNK_SIZE_HEX_DIGITS_MAX: usize = 8;
/// One chunk-size line with its extensions and CRLF. Extensions are ignored; real ones
/// are a few bytes, and each line is scanned, so the bound keeps the scan short.
pub const CHUNK_LINE_BYTES_MAX: usize = 1024;
/// All trailer lines of a chunked body with their CRLFs, the final empty line included.
/// Trailers are read and dropped; producers send none.
pub const CHUNK_TRAILER_BYTES_MAX: usize = 4096;
/// Default `[ingest] header_timeout_ms`: from a request's first byte to its last header byte.
pub const HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default `[ingest] body_timeout_ms`: from the end of the headers to the end of the body.
pub const BODY_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default `[ingest] idle_timeout_ms`: a keep-alive connection with no request in progress.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default `[ingest] connections_max` per shard; with idle connections holding no
/// buffers this costs about 200 bytes each.
pub const CONNECTIONS_PER_SHARD_MAX_DEFAULT: usize = 16_384;
/// Default `[ingest] drain_timeout_ms`: how long SIGTERM waits for in-flight requests.
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;

// --- TLS and per-IP limit (issue 4) ---
/// Open connections one client address (IPv6: one /64) may hold over all shards: room
/// for a partner's whole connection pool behind one NAT, while one host cannot take
/// more than a small share of `shards x connections_max`. 0 in the config = no limit.
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: usize = 1024;
/// `[ingest] io_uring_lockdown`: on, because a serving process needs no ring but the ones
/// its shards create before the filter goes on (docs/SECURITY.md § io_uring restrictions).
pub const IO_URING_LOCKDOWN_DEFAULT: bool = true;
/// `[ingest.tls] listen` when the table is present without it (HTTPS-alt, like 8080).
pub const TLS_LISTEN_DEFAULT: &str = "127.0.0.1:8443";
/// CRL files one configuration may name (each is read whole at start and reload).
pub const TLS_CRL_FILES_MAX: usize = 64;
/// Largest certificate, key or CA file read (PEM): far above any real chain or bundle.
pub const TLS_PEM_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Largest CRL file read: a CRL with ~1M revoked serials is about 40 MiB.
pub const TLS_CRL_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Longest client-certificate identity (subject CN or SAN) kept for a connection; a
/// longer one is ignored rather than cut, so two identities never collide by truncation.
pub const TLS_IDENTITY_BYTES_MAX: usize = 256;

// --- PROXY protocol on the ingest listeners (issue 5) ---
/// A version 1 header with its CRLF, at most (HAProxy's proxy-protocol.txt §2.1: the
/// worst-case `UNKNOWN` line is 107 bytes, so a receiver can read it in one go).
pub const PROXY_V1_HEADER_BYTES_MAX: usize = 107;
/// A version 2 header (16 fixed bytes, the address block and TLVs), at most. The format
/// allows 16 + 65,535 bytes, but real balancers add a few dozen bytes of TLVs (AWS NLB's
/// VPC endpoint id, Azure's link id, GCP's PSC id) and HAProxy's SSL, authority and
/// unique-id TLVs stay well under 1 KiB. The header is buffered whole before any of it is
/// used, so the bound is what one connection can make a shard hold before its first HTTP
/// byte; 4 KiB fits in one receive buffer and the smallest pooled input buffer, so a header
/// never makes a buffer grow. A longer header is refused as invalid.
pub const PROXY_V2_HEADER_BYTES_MAX: usize = 4096;
/// CIDR blocks in one listener's `proxy_trusted_cidrs` (checked at accept by a linear
/// scan): a balancer fleet is a few subnets.
pub const PROXY_TRUSTED_CIDRS_MAX: usize = 64;

/// Events in one `POST /v1/events/batch` body (SPEC §1).
pub const BATCH_EVENTS_MAX: usize = 1000;
/// `event_id` length in bytes (SPEC §1.2).
pub const EVENT_ID_BYTES_MAX: usize = 128;
/// `event_type` length in bytes: a short name such as `bet` or `kyc.result`.
pub const EVENT_TYPE_BYTES_MAX: usize = 64;
/// `key.user_id` length in bytes: long enough for any external id, short enough to hash fast.
pub const USER_ID_BYTES_MAX: usize = 256;
/// JSON nesting depth (SPEC §1.2).
pub const JSON_DEPTH_MAX: usize = 64;

/// Default `[auth] timestamp_tolerance_secs` (SPEC §1.1).
pub const TIMESTAMP_TOLERANCE_SECS_DEFAULT: u64 = 300;
/// Default `[auth] request_ids_max`: a minute of 16k requests/s that all carry an id.
pub const REQUEST_IDS_MAX_DEFAULT: usize = 1_000_000;
/// Default `[auth] request_id_memory_bytes_max`: about 1M single-event answers.
pub const REQUEST_ID_MEMORY_BYTES_MAX_DEFAULT: usize = 256 << 20;
/// Default `[auth] quarantine_bytes_max`.
pub const QUARANTINE_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Signatures in one `X-Signature` header; more is an attempt to make us hash in a loop.
pub const SIGNATURES_PER_HEADER_MAX: usize = 8;
/// Keys of one partner tried against a `webhook-signature`: enough for a rotation
/// (old, new, one spare); bounds the HMACs an unauthenticated request can cost.
pub const WEBHOOK_KEYS_TRIED_MAX: usize = 4;
/// `X-Request-Id` and `webhook-id` length in bytes (visible ASCII).
pub const REQUEST_ID_BYTES_MAX: usize = 256;
/// Secret length bounds in bytes after base64 decoding (SPEC §1.1: 24..64).
pub const SECRET_BYTES_MIN: usize = 24;
pub const SECRET_BYTES_MAX: usize = 64;
/// Key id length in bytes.
pub const KID_BYTES_MAX: usize = 64;
/// `X-Timestamp` digits: 12 decimal digits of unix seconds reach the year 33658.
pub const TIMESTAMP_DIGITS_MAX: usize = 12;
/// Keys in one key ring: a few per partner during rotations; more is a mistake.
pub const KEYS_PER_RING_MAX: usize = 1024;
/// Consumer tokens in one key ring (`[[tokens]]`); each request compares against all of
/// them in constant time, so the list stays short.
pub const TOKENS_PER_RING_MAX: usize = 256;
/// Topics a partner's `consume_topics` may list.
pub const TOPICS_MAX: usize = 256;
/// Partner name length in bytes: a display name, not a document.
pub const PARTNER_BYTES_MAX: usize = 128;
/// Partners per key ring file: a table scanned at load, indexed by name.
pub const PARTNERS_PER_RING_MAX: usize = 1024;
/// Event types one partner may list (checked per event by a linear scan).
pub const EVENT_TYPES_PER_PARTNER_MAX: usize = 256;
/// CIDR blocks in one partner's allow-list (checked per request by a linear scan).
pub const CIDRS_PER_PARTNER_MAX: usize = 64;
/// Client-certificate identities or JWT subjects one partner may list.
pub const IDENTITIES_PER_PARTNER_MAX: usize = 64;
/// `grace_days` ceiling: a rotation that takes longer than a year is no rotation.
pub const GRACE_DAYS_MAX: u32 = 365;
/// `sluice keys gen --valid-days` ceiling: ten years.
pub const KEY_VALID_DAYS_MAX: u32 = 3650;
/// Random bytes in a secret made by `sluice keys gen`: the HMAC-SHA256 output size.
pub const SECRET_BYTES_GENERATED: usize = 32;
/// Attempts to draw a kid not yet in the ring (24 random bits per attempt).
pub const KID_GENERATE_ATTEMPTS_MAX: usize = 16;

/// Default `[storage] partitions` (SPEC §4).
pub const PARTITIONS_DEFAULT: u32 = 64;
/// Upper bound on partitions: directory names are three digits wide... and then some.
pub const PARTITIONS_MAX: u32 = 4096;
/// Default `[storage] segment_bytes`: preallocated per active segment, so 64 partitions
/// reserve 1 GiB of disk once all have been written to.
pub const SEGMENT_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// Smallest allowed segment: it must hold the largest record (a body at the maximum size).
pub const SEGMENT_BYTES_MIN: u64 = 1024 * 1024;
/// A partition's first segment: later ones double up to `segment_bytes`, so a partition
/// with little data reserves little disk (64 partitions hold 64 MiB, not 1 GiB, before
/// they have data to fill more) and a busy one reaches full size after a few rolls.
pub const FIRST_SEGMENT_BYTES: u64 = SEGMENT_BYTES_MIN;
/// A partition asks for its next segment (a spare, preallocated whole) once its active
/// segment is this full: early enough that the spare is ready before the roll (making
/// one takes milliseconds; half of a 16 MiB segment is thousands of events), late enough
/// that a partition with little data holds one segment, not two, and an idle one none.
pub const SPARE_REQUEST_FILL_PERCENT: u64 = 50;
/// Bytes at the start of a spare segment faulted in ahead of its roll: the header page
/// and the first few hundred records, so the roll's first requests take no faults.
pub const SPARE_PREFAULT_BYTES: usize = 256 * 1024;
/// Default `[storage] retention_hours`: one week.
pub const RETENTION_HOURS_DEFAULT: u64 = 168;
/// Default `[storage] retention_bytes` per partition: 0 means no size limit.
pub const RETENTION_BYTES_DEFAULT: u64 = 0;
/// Default `[dedup] ids_per_partition_max`: about 45 MiB of dedup memory per full partition.
pub const DEDUP_IDS_PER_PARTITION_MAX_DEFAULT: usize = 1_000_000;

/// Received requests a shard handles before it sends their answers in the middle of a
/// loop: small enough that the first answer of a 128-completion loop does not wait
/// for the last (about 16 x 7 µs), large enough that the extra io_uring_enter is cheap.
pub const RECEIVES_PER_EARLY_FLUSH: usize = 16;
/// TLS handshake work a shard does per loop turn before the rest wait for the next turn
/// (`shard/io.rs`): bounds what a burst of handshakes adds to a plaintext answer.
pub const HANDSHAKE_NS_PER_TURN: u64 = 1_000_000;
/// Reactor tick: timeouts, retention and drain checks run at least this often.
pub const TICK_MS: u64 = 100;
/// A shard whose reactor loop has not turned for this long is stalled: `/readyz` turns
/// 503 and the systemd watchdog is no longer fed. Twenty idle ticks: long enough that a
/// slow loop under load (segment roll, a large batch) is not mistaken for a hang.
pub const SHARD_STALL_MS: u64 = 2_000;
/// How often the main thread reads the shards' loop counters and refreshes `STATUS=`.
pub const SUPERVISE_POLL_MS: u64 = 20;
/// Errors that can repeat per request or per connection (a full disk, EMFILE at accept)
/// are logged at most once per this period per shard, with a count of the rest.
pub const LOG_SAMPLE_PERIOD_MS: u64 = 1_000;
/// After an append fails (a full disk), `/readyz` answers 503 for this long so the
/// balancer moves traffic away; then it lets one probe succeed and traffic tries again
/// (an append that succeeds clears it at once).
pub const STORAGE_UNREADY_HOLD_MS: u64 = 30_000;
/// How often start-up reports recovery progress to systemd.
pub const STARTUP_PROGRESS_MS: u64 = 5_000;
/// Start-up time asked of systemd each time recovery has moved: a recovery that stops
/// moving for this long hits `TimeoutStartSec=`.
pub const STARTUP_EXTEND_MS: u64 = 60_000;
/// How often `STATUS=` (request rate) is refreshed for `systemctl status`.
pub const STATUS_REFRESH_MS: u64 = 5_000;
/// Listen backlog per shard socket; the kernel caps it at net.core.somaxconn
/// (`sluice tune --check` compares the two).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Receive buffers in a shard's provided buffer ring and their size: 256 × 16 KiB = 4 MiB
/// per shard, shared by all of the shard's connections (a buffer is held only between
/// completion and copy).
pub const RECV_BUFFERS: u16 = 256;
pub const RECV_BUFFER_BYTES: u32 = 16 * 1024;
/// A connection whose unsent answers exceed this is not read any more (it is not reading).
pub const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;
/// How long a closing connection reads and discards before it is cut.
pub const LINGER_MS: u64 = 2000;
/// Inbox messages a shard handles per loop, so a flood from one shard cannot starve the network.
pub const INBOX_MESSAGES_PER_LOOP_MAX: usize = 256;
/// Retention and dedup-window housekeeping period.
pub const HOUSEKEEPING_MS: u64 = 10_000;
/// How often each partition's active segment checkpoint is rewritten (when it moved):
/// a restart after a kill -9 reads at most this much of the log's newest records.
pub const CHECKPOINT_MS: u64 = 1_000;
/// Pooled connection buffers per shard, the largest one kept, and a fresh one's size.
pub const POOL_BUFFERS_MAX: usize = 4096;
pub const POOL_BUFFER_BYTES_MAX: usize = 64 * 1024;
pub const POOL_BUFFER_BYTES_INITIAL: usize = 16 * 1024;
/// What a shard's pool keeps across ticks: past it, free buffers go back to the allocator
/// (they count against the memory budget while pooled).
pub const POOL_KEEP_BYTES_MAX: u64 = 16 << 20;
/// Result vectors of batch requests a shard keeps for reuse.
pub const RESULT_VECS_POOLED_MAX: usize = 1024;
/// Records one shard may queue for another within one reactor loop; past it, further
/// events for that owner are answered `503 overloaded` until the batch has been sent.
pub const HANDOFF_RECORDS_PER_LOOP_MAX: usize = 1024;
/// Batches in flight from one shard to another; a full queue is backpressure.
pub const HANDOFF_QUEUE_BATCHES_MAX: usize = 1024;

const _: () = assert!(SHARD_STALL_MS >= 10 * TICK_MS);
const _: () = assert!(RECV_BUFFERS.is_power_of_two());
const _: () = assert!(POOL_BUFFER_BYTES_INITIAL <= POOL_BUFFER_BYTES_MAX);
// A whole PROXY header fits in one receive buffer and in a fresh pooled input buffer.
const _: () = assert!(PROXY_V2_HEADER_BYTES_MAX <= RECV_BUFFER_BYTES as usize);
const _: () = assert!(PROXY_V2_HEADER_BYTES_MAX <= POOL_BUFFER_BYTES_INITIAL);
const _: () = assert!(STARTUP_EXTEND_MS >= 4 * STARTUP_PROGRESS_MS);
const _: () = assert!(SUPERVISE_POLL_MS < TICK_MS);
const _: () = assert!(HEADERS_COUNT_MAX_DEFAULT <= HEADERS_COUNT_MAX_CEILING);
const _: () = assert!(HEADER_BYTES_MAX_FLOOR <= HEADER_BYTES_MAX_DEFAULT && HEADER_BYTES_MAX_DEFAULT <= HEADER_BYTES_MAX_CEILING);
const _: () = assert!(BODY_BYTES_MAX_FLOOR <= BODY_BYTES_MAX_DEFAULT && BODY_BYTES_MAX_DEFAULT <= BODY_BYTES_MAX_CEILING);
// A segment of the smallest size holds the largest body twice (`storage.segment_bytes`).
const _: () = assert!(2 * BODY_BYTES_MAX_CEILING as u64 + 4096 <= SEGMENT_BYTES_MAX);
// A v2 header with the largest address block (two UNIX paths) and no TLV must fit, and
// the bound cannot exceed what the 16-bit length field can say.
const _: () = assert!(PROXY_V2_HEADER_BYTES_MAX >= 16 + 216);
const _: () = assert!(PROXY_V2_HEADER_BYTES_MAX <= 16 + u16::MAX as usize);
const _: () = assert!(PROXY_V1_HEADER_BYTES_MAX <= PROXY_V2_HEADER_BYTES_MAX);
// A chunk size at the digit bound exceeds the largest configurable body (64 MiB), so the
// body limit, not the digit bound, is what a well-formed large chunk runs into.
const _: () = assert!(1u64 << (4 * CHUNK_SIZE_HEX_DIGITS_MAX) > 64 * 1024 * 1024);
const _: () = assert!(CONTENT_LENGTH_DIGITS_MAX <= 19); // 10^19 - 1 fits a u64
const _: () = assert!(SECRET_BYTES_MIN <= SECRET_BYTES_MAX);
const _: () = assert!(SECRET_BYTES_MIN <= SECRET_BYTES_GENERATED);
const _: () = assert!(SECRET_BYTES_GENERATED <= SECRET_BYTES_MAX);
const _: () = assert!(TIMESTAMP_DIGITS_MAX <= 18); // fits i64 without overflow checks
const _: () = assert!(SEGMENT_BYTES_MIN >= 2 * BODY_BYTES_MAX_DEFAULT as u64);
const _: () = assert!(PARTITIONS_DEFAULT <= PARTITIONS_MAX);

/// Segment file header at position 0 (docs/STORAGE.md); records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Fixed record header in front of every event id and event (docs/STORAGE.md).
pub const RECORD_HEADER_BYTES: usize = 32;
/// Records start at multiples of this, so each commit word is an aligned `AtomicU32`.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Largest segment file: record body lengths are `u32` and a whole segment is mapped.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;
/// Zeros written per call when `fallocate` cannot reserve or zero a range itself.
pub const ZERO_FILL_CHUNK_BYTES: usize = 64 * 1024;
/// `sluice.meta` holds three short lines; a larger file is not ours.
pub const META_FILE_BYTES_MAX: u64 = 4096;

const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN_BYTES));
const _: () = assert!(RECORD_ALIGN_BYTES.is_multiple_of(std::mem::align_of::<u32>()));
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_MAX);
const _: () =
    assert!(SEGMENT_BYTES_MIN >= (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + EVENT_ID_BYTES_MAX + BODY_BYTES_MAX_DEFAULT) as u64);

// Load harness (`sluice bench`, src/tools/bench/).

/// Requests one run may pre-build: request indices are `u32` and every request costs a
/// 16-byte span besides its bytes.
pub const BENCH_PLAN_REQUESTS_MAX: usize = 1 << 31;
/// Requests per chunk of the pool: the unit of parallel building (about 35 MB of
/// single events), and of duplicate look-back (a duplicate copies a request of its chunk).
pub const BENCH_PLAN_CHUNK_REQUESTS: usize = 1 << 16;
/// Bytes the pre-built request pool may take; past it the run is refused up front.
pub const BENCH_PLAN_BYTES_MAX: u64 = 16 << 30;
/// Closed-loop pool size when `--requests` is not given, per client thread and second of
/// warm-up + run: above what one client core can push against nginx `return 204`, so a
/// default run does not run out.
pub const BENCH_CLOSED_LOOP_REQUESTS_PER_SEC_DEFAULT: u64 = 400_000;
/// A duplicate re-sends one of the last this many unique requests (a prompt retry), so
/// its pre-signed timestamp is as fresh as the original's.
pub const BENCH_DUPLICATE_LOOKBACK: usize = 1024;
/// Longest closed-loop warm-up + run: every request is signed at build time and the
/// server accepts timestamps up to `TIMESTAMP_TOLERANCE_SECS_DEFAULT` old. Open-loop
/// runs sign each request for its intended send time and have no such bound.
pub const BENCH_CLOSED_LOOP_SECS_MAX: u64 = 240;
/// Largest `--event-bytes` (the server's default body limit).
pub const BENCH_EVENT_BYTES_MAX: usize = BODY_BYTES_MAX_DEFAULT;
/// Response heads larger than this are a parse error (nginx's largest default is 8 KiB).
pub const BENCH_RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Headers one response may carry.
pub const BENCH_RESPONSE_HEADERS_MAX: usize = 64;
/// Bytes of chunked-body trailer lines accepted after the last chunk.
pub const BENCH_RESPONSE_TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Requests written but unanswered on one connection in open loop (HTTP/1.1 pipelining);
/// a connection at the bound takes no more until answers arrive, and the schedule lag shows it.
pub const BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX: usize = 4096;
/// Connection attempts in flight per client thread (a burst of 10,000 SYNs would
/// overflow a listen backlog and cost one-second SYN retries).
pub const BENCH_CONNECTS_IN_FLIGHT_MAX: usize = 256;
/// Wait before reconnecting after a failed or broken connection (not after an orderly
/// `Connection: close`, which reconnects at once).
pub const BENCH_RECONNECT_DELAY_MS: u64 = 100;
/// Client loop housekeeping period: timeouts, reconnects, idle pings, end of run.
pub const BENCH_TICK_MS: u64 = 10;
/// Receive buffers per client thread (provided buffer ring) and their size.
pub const BENCH_RECV_BUFFERS: u16 = 512;
pub const BENCH_RECV_BUFFER_BYTES: u32 = 16 * 1024;
/// fdatasync probe: bytes appended before each fdatasync.
pub const BENCH_FSYNC_PROBE_WRITE_BYTES: usize = 4096;
/// Latency histogram range in nanoseconds and its precision (HdrHistogram).
pub const BENCH_LATENCY_NS_MIN: u64 = 1;
pub const BENCH_LATENCY_NS_MAX: u64 = 60_000_000_000;
pub const BENCH_LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Seconds the per-second timeline keeps (from the end of the warm-up): each second costs
/// up to two 10 KiB histograms per client thread, so a one-hour run keeps at most 72 MiB
/// per thread; later seconds are counted in the totals only.
pub const BENCH_TIMELINE_SECS_MAX: usize = 3600;
/// The timeline's per-second latency histograms: microseconds up to a minute, 2
/// significant digits (1 % is plenty for a p99 per second, and 10 KiB each).
pub const BENCH_TIMELINE_LATENCY_US_MAX: u64 = 60_000_000;
pub const BENCH_TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;
/// `--probe-every` default, and its bounds: a probe at most every millisecond, at least
/// every minute.
pub const BENCH_PROBE_EVERY_MS_DEFAULT: u64 = 100;
pub const BENCH_PROBE_EVERY_MS_MAX: u64 = 60_000;
/// Bytes of one probe answer read at a time (heads are parsed in place; bodies skipped).
pub const BENCH_PROBE_READ_BYTES: usize = 4096;
/// `--rounds` of a comparison: each round is a full run of both targets.
pub const BENCH_COMPARE_ROUNDS_MAX: usize = 100;
/// `--request-templates`: templates one file may hold. Each becomes a pool chunk of its
/// own, and chunks are numbered with 16 bits.
pub const BENCH_TEMPLATES_MAX: usize = 1 << 16;
/// `--request-templates`: bytes of the file, read whole before the run (256 batches of
/// 1,000 events of 1 KiB fit, each about 1.3 MB once base64-encoded as Iggy wants).
pub const BENCH_TEMPLATES_FILE_BYTES_MAX: u64 = 512 << 20;

const _: () = assert!(BENCH_CLOSED_LOOP_SECS_MAX < TIMESTAMP_TOLERANCE_SECS_DEFAULT);
const _: () = assert!(BENCH_TEMPLATES_MAX <= u16::MAX as usize + 1);
// A request built from the file is shorter than the file plus its Host header, so it
// fits a span's `u32` length.
const _: () = assert!(BENCH_TEMPLATES_FILE_BYTES_MAX < u32::MAX as u64 / 2);
const _: () = assert!(BENCH_PLAN_REQUESTS_MAX <= u32::MAX as usize);
const _: () = assert!(BENCH_RECV_BUFFERS.is_power_of_two());
const _: () = assert!(BENCH_TICK_MS < BENCH_RECONNECT_DELAY_MS);
const _: () = assert!(BENCH_TIMELINE_LATENCY_US_MAX * 1000 == BENCH_LATENCY_NS_MAX);

// JWT bearer tokens (src/perimeter/jwt/).

/// Bytes of one bearer token after `Bearer `: an RS256 token with a 4096-bit signature
/// (683 base64url characters) and a generous claims set stays under 2 KiB; 8 KiB is
/// nginx's default header line limit.
pub const JWT_TOKEN_BYTES_MAX: usize = 8 * 1024;
/// Default `leeway_secs`: the clock skew granted on `exp`, `nbf` and `iat`, as most
/// OAuth2 resource servers do (Spring Security's default is 60 s).
pub const JWT_LEEWAY_SECS_DEFAULT: u64 = 60;
/// Ceiling on `leeway_secs`: the HMAC scheme's timestamp window; an issuer clock further
/// off is broken, and a larger leeway would extend every stolen token's life.
pub const JWT_LEEWAY_SECS_MAX: u64 = 300;
/// Issuers one policy may trust; a `u64` bit mask records which audiences a token names.
pub const JWT_ISSUERS_MAX: usize = 64;
/// Members of one JSON object in a token header or claims set: access tokens carry
/// about fifteen; the duplicate check keeps the names of one object on the stack.
pub const JWT_JSON_MEMBERS_MAX: usize = 64;
/// Nesting depth of a token header or claims set (the top-level object is depth 1):
/// Keycloak's `realm_access.roles` is depth 3; each level costs 1 KiB of stack.
pub const JWT_JSON_DEPTH_MAX: usize = 8;
/// Bytes of one JWKS file: 64 keys with their `x5c` certificate chains fit in 256 KiB.
pub const JWKS_FILE_BYTES_MAX: u64 = 256 * 1024;
/// Keys in one JWKS file, skipped ones included: an issuer publishes two or three
/// (current, next, previous); keys are matched by a linear scan of `kid`s.
pub const JWKS_KEYS_MAX: usize = 64;
/// `kid` length in bytes: thumbprint kids are 43 characters; longer is a mistake.
pub const JWKS_KID_BYTES_MAX: usize = 256;
/// RSA modulus bounds in bits: below 2048 is breakable (NIST SP 800-131A); above 4096
/// makes every verification a cost an attacker chooses.
pub const JWT_RSA_BITS_MIN: usize = 2048;
pub const JWT_RSA_BITS_MAX: usize = 4096;

const _: () = assert!(JWT_TOKEN_BYTES_MAX <= HEADER_BYTES_MAX_DEFAULT);
const _: () = assert!(JWT_LEEWAY_SECS_DEFAULT <= JWT_LEEWAY_SECS_MAX);
const _: () = assert!(JWT_LEEWAY_SECS_MAX <= TIMESTAMP_TOLERANCE_SECS_DEFAULT);
const _: () = assert!(JWT_ISSUERS_MAX <= u64::BITS as usize);
const _: () = assert!(JWT_JSON_DEPTH_MAX >= 3 && JWT_JSON_DEPTH_MAX <= JSON_DEPTH_MAX);
const _: () = assert!(JWT_RSA_BITS_MIN.is_multiple_of(8) && JWT_RSA_BITS_MIN <= JWT_RSA_BITS_MAX);

// ---- Signed replay runbooks (replay::runbook, replay::signer) ----

/// Bytes of one runbook document: about 45,000 items pretty-printed with short refs.
/// This, not `RUNBOOK_ITEMS_MAX`, is the binding limit for large runbooks (an item
/// takes 150+ bytes), so `Runbook::plan` refuses a plan whose document would not fit.
pub const RUNBOOK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Items in one runbook: a replay larger than this is split into several runbooks,
/// each reviewed on its own.
pub const RUNBOOK_ITEMS_MAX: usize = 100_000;
/// Characters (not bytes) of a runbook's `reason`: a paragraph an approver reads whole.
pub const RUNBOOK_REASON_CHARS_MAX: usize = 2000;
/// Bytes of an item's `ref` and of a DLQ id: a topic/partition/offset triple or an
/// opaque id fits many times over.
pub const RUNBOOK_REF_BYTES_MAX: usize = 256;
/// Signatures on one runbook: a requester and a handful of approvers.
pub const RUNBOOK_SIGNATURES_MAX: usize = 8;
/// Bytes one signature adds to a pretty-printed runbook at most (a 64-byte name, the
/// role, 88 base64 characters and the JSON around them), so a plan keeps room for all.
pub const RUNBOOK_SIGNATURE_JSON_BYTES_MAX: usize = 256;
/// Longest validity window of a runbook (7 days): an approval is for a replay soon,
/// not a standing permission.
pub const RUNBOOK_VALIDITY_MS_MAX: i64 = 7 * 24 * 3_600_000;
/// How far a runbook's `created_at_ms` may be ahead of the verifier's clock: the
/// planner's laptop and the server disagree by seconds, never by minutes.
pub const RUNBOOK_CLOCK_SKEW_MS: i64 = 60_000;
/// Bytes of a signer's private key file: one line of ~150 bytes.
pub const SIGNER_FILE_BYTES_MAX: u64 = 4 * 1024;
/// Length of a signer name (`[a-z0-9_.-]`).
pub const SIGNER_NAME_BYTES_MAX: usize = 64;

const _: () = assert!(RUNBOOK_SIGNATURES_MAX * RUNBOOK_SIGNATURE_JSON_BYTES_MAX < RUNBOOK_BYTES_MAX);
const _: () = assert!(RUNBOOK_SIGNATURE_JSON_BYTES_MAX >= SIGNER_NAME_BYTES_MAX + 88 + 80);
const _: () = assert!(RUNBOOK_CLOCK_SKEW_MS < RUNBOOK_VALIDITY_MS_MAX);

// ---- Consumers (issue 13, SPEC §6) ----

/// Events one partition read returns without `max` (SPEC §6).
pub const READ_EVENTS_DEFAULT: u32 = 1000;
/// Ceiling on `max` (SPEC §6).
pub const READ_EVENTS_MAX: u32 = 10_000;
/// Ceiling on `wait_ms` (SPEC §6): a long-poll longer than this is a stream.
pub const READ_WAIT_MS_MAX: u64 = 30_000;
/// Bytes of one partition read's answer body: the answer is built whole (it carries a
/// Content-Length), so fewer than `max` events are returned past this and
/// `X-Next-Offset` says where to go on. 10,000 events of 400 bytes fit.
pub const READ_RESPONSE_BYTES_MAX: usize = 4 << 20;
/// Bytes of a consumer request's query string.
pub const CONSUMER_QUERY_BYTES_MAX: usize = 1024;
/// Subscription name length (`[A-Za-z0-9_.-]`).
pub const SUBSCRIPTION_NAME_BYTES_MAX: usize = 64;
/// Subscriptions one node keeps: each costs a cursor per partition of its topics.
pub const SUBSCRIPTIONS_MAX: usize = 1024;
/// Body of `PUT /v1/subscriptions/{s}` and of a cursor commit.
pub const CONSUMER_BODY_BYTES_MAX: usize = 64 * 1024;
/// Cursors in one commit.
pub const COMMIT_CURSORS_MAX: usize = 1024;
/// Ceiling on `batch_limit` (events per stream line).
pub const STREAM_BATCH_LIMIT_MAX: u32 = 10_000;
/// Ceiling on `batch_flush_timeout_ms`; an idle stream sends an empty batch at least
/// this often (SPEC §6: at least every 30 s; the default is 30 s).
pub const BATCH_FLUSH_TIMEOUT_MS_MAX: u64 = 30_000;
/// Ceiling on `max_uncommitted`.
pub const STREAM_UNCOMMITTED_MAX: u32 = 100_000;
/// Ceiling on `stream_timeout_ms` (a day); 0 means no limit.
pub const STREAM_TIMEOUT_MS_MAX: u64 = 86_400_000;
/// The commit timeout (SPEC §6: 60 s); a stream may ask for less (`commit_timeout_ms`),
/// never more.
pub const COMMIT_TIMEOUT_MS_MAX: u64 = 60_000;
/// Ceiling on `reorder_window_ms` (the article §5 asks for 60–120 s).
pub const REORDER_WINDOW_MS_MAX: u64 = 600_000;
/// Events a stream holds back for its reorder window; past it the oldest held event is
/// released early (counted), so a flood cannot grow the hold without bound.
pub const REORDER_HELD_EVENTS_MAX: usize = 100_000;
/// Bytes of events a stream's reorder window holds (held and late together); reading
/// stops at it and the oldest are released early, as at the count limit.
pub const REORDER_HELD_BYTES_MAX: usize = 64 << 20;
/// Bytes of one subscription stream line (its events): a batch ends early past it, as
/// a partition read does at `READ_RESPONSE_BYTES_MAX`.
pub const STREAM_LINE_BYTES_MAX: usize = 1 << 20;
/// Streams and SSE answers one shard serves at once: each keeps a read-only mapping of
/// a segment per partition it reads, and `vm.max_map_count` (65530 by default) bounds
/// them all, the writer's included. Past it: 503 overloaded.
pub const CONSUMER_STREAMS_PER_SHARD_MAX: usize = 4096;
/// Output bytes above which a stream stops producing until the peer has read them:
/// the backpressure of a slow reader is on its own connection only.
pub const STREAM_OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;
/// SSE keep-alive comment period, and the `retry:` hint sent first.
pub const SSE_KEEPALIVE_MS: u64 = 15_000;
pub const SSE_RETRY_MS: u64 = 3_000;
/// Bytes of the read log (every shard's files together) before its oldest period is
/// deleted; and the period of one file.
pub const READ_LOG_BYTES_MAX_DEFAULT: u64 = 1 << 30;
pub const READ_LOG_PERIOD_MS: i64 = 3_600_000;

const _: () = assert!(READ_EVENTS_DEFAULT <= READ_EVENTS_MAX);
const _: () = assert!(BATCH_FLUSH_TIMEOUT_MS_MAX <= 30_000);

// --- schemas, policies, dead letters, replay (issue 15) ---

/// Bytes of one schema document as registered: far above any envelope schema, small
/// enough that compiling one on the admin thread takes milliseconds.
pub const SCHEMA_BYTES_MAX: usize = 256 * 1024;
/// Nesting of a schema document (objects and arrays), checked before it is compiled.
pub const SCHEMA_DEPTH_MAX: usize = 32;
/// Values (objects, arrays, scalars) in one schema document.
pub const SCHEMA_NODES_MAX: usize = 20_000;
/// Entries of one `enum`: a huge enum is a lookup table, not a schema.
pub const SCHEMA_ENUM_VALUES_MAX: usize = 1024;
/// `$ref`/`$dynamicRef` occurrences in one schema (all local: remote ones are refused).
pub const SCHEMA_REFS_MAX: usize = 128;
/// Compiled size of one `pattern` regex (the `regex` crate's size limit; its engine never
/// backtracks, so matching is linear in the input).
pub const SCHEMA_PATTERN_BYTES_MAX: usize = 64 * 1024;
/// Stream versions one topic may declare (`versions = N`).
pub const STREAM_VERSIONS_MAX: u32 = 16;
/// Versions one event type may have, and event types with schemas.
pub const SCHEMA_VERSIONS_MAX: usize = 256;
pub const SCHEMA_SUBJECTS_MAX: usize = 4096;
/// Field paths one policy may list (blocked or required), and their length.
pub const POLICY_FIELDS_MAX: usize = 256;
pub const POLICY_FIELD_PATH_BYTES_MAX: usize = 256;
/// Geo codes one policy may list.
pub const POLICY_GEO_CODES_MAX: usize = 512;
/// Users whose KYC/RG state is kept; past it changes for new users are not kept (those
/// users are judged unknown, refused by the gates) and counted, never a growing map.
pub const GATE_USERS_MAX: usize = 10_000_000;

const _: () = assert!(SCHEMA_DEPTH_MAX <= JSON_DEPTH_MAX);
const _: () = assert!(SCHEMA_BYTES_MAX <= BODY_BYTES_MAX_CEILING);

// ---- Dead-letter queue (SPEC §9) ----
/// Bytes of a dead letter's reason, a snake_case error code: the longest today is under 32.
pub const DLQ_REASON_BYTES_MAX: usize = 64;
/// Bytes of a dead letter's detail (human text, e.g. which schema rule failed); the
/// writer cuts a longer one at a character boundary rather than lose the dead letter.
pub const DLQ_DETAIL_BYTES_MAX: usize = 1024;
/// Request headers kept with a dead letter: producers send about ten.
pub const DLQ_HEADERS_COUNT_MAX: usize = 64;
/// Bytes of the names and values of a dead letter's headers: a signed request's head is
/// about 400 bytes, so 8 KiB keeps every real one whole.
pub const DLQ_HEADERS_BYTES_MAX: usize = 8 * 1024;
/// Period of one dead-letter file: whole hours expire together past the retention.
pub const DLQ_FILE_PERIOD_MS: i64 = 3_600_000;
/// Distinct reasons counted in the metrics; more share the `other` label (the error
/// codes that dead-letter are a fixed, short list, so this is only a guard).
pub const DLQ_REASON_LABELS_MAX: usize = 64;

const _: () = assert!(DLQ_HEADERS_COUNT_MAX <= HEADERS_COUNT_MAX_CEILING);
const _: () = assert!(DLQ_HEADERS_BYTES_MAX <= HEADER_BYTES_MAX_CEILING);
