//! What the main thread and the client threads share: the loop's options, the gate
//! where threads wait for the clock to start, the stop flags and the live progress.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// What the client loop needs from the validated options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub addr: SocketAddr,
    /// `Host` header of the idle connections' pings.
    pub host: String,
    /// Closed loop: requests outstanding per connection.
    pub pipeline: usize,
    /// Open loop: requests per second over all threads.
    pub rate: Option<f64>,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    /// No answer for this long while requests wait: the connection is reopened.
    pub timeout_ns: u64,
    pub idle_ping_ns: u64,
    /// `None`: plain HTTP.
    pub tls: Option<crate::tools::bench::args::TlsClient>,
}

/// Live figures of one thread, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub p99_ns: AtomicU64,
    /// Load connections open after the connect phase (valid once `ready` is passed).
    pub ready_connections: AtomicU64,
}

/// What the threads of one run share. Times are nanoseconds since `origin`.
pub struct Shared {
    origin: Instant,
    /// Every thread has tried its connections; then the main thread sets `start_ns`.
    pub gate: Gate,
    pub start_ns: AtomicU64,
    /// The main thread found no open connection: threads leave without running.
    pub abort: AtomicBool,
    /// A thread ran out of requests: everybody stops; `stopped_at_ns` says when.
    pub stop: AtomicBool,
    /// SIGINT or SIGTERM arrived: stop now and report what was measured.
    pub interrupted: Arc<AtomicBool>,
    pub stopped_at_ns: AtomicU64,
    pub progress: Vec<Progress>,
    /// The last connect error seen, for the "cannot connect" message.
    pub last_connect_error: Mutex<Option<String>>,
}

impl Shared {
    /// `interrupted` is set by the signal handlers; one flag serves every run of a comparison.
    pub fn new(threads: usize, interrupted: Arc<AtomicBool>) -> Shared {
        Shared {
            origin: Instant::now(),
            gate: Gate::default(),
            start_ns: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            interrupted,
            stopped_at_ns: AtomicU64::new(u64::MAX),
            progress: (0..threads).map(|_| Progress::default()).collect(),
            last_connect_error: Mutex::new(None),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Where the threads meet before the clock starts: each [`arrive`](Gate::arrive)s after
/// its connect phase and waits for the main thread to [`open`](Gate::open) the gate.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    pub fn arrive(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Blocks until `count` threads have arrived.
    pub fn wait_arrivals(&self, count: usize) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while state.0 < count {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn open(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.1 = true;
        self.changed.notify_all();
    }
}
