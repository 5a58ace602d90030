//! The `sluice` binary under test: a `sluice serve` child process that is ready when it
//! says so, signals, exit, and one-shot commands.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::http::Client;

/// How long a server may take to print its ready line (debug build, cold disk).
pub const READY_TIMEOUT_MS: u64 = 20_000;
/// How long a SIGTERM'd server may take to drain and exit.
pub const EXIT_TIMEOUT_MS: u64 = 20_000;

/// The `sluice` binary under test: `$SLUICE_BIN`, else the one Cargo built beside the
/// running test binary (`target/<profile>/sluice`, tests run from `target/<profile>/deps`).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("SLUICE_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join("sluice");
        assert!(bin.exists(), "{} is missing: run the tests with `cargo test`, which builds it (or set SLUICE_BIN)", bin.display());
        bin
    })
}

/// `kill(pid, signal)`: 0, or -1 with errno set.
pub fn kill(pid: u32, signal: libc::c_int) -> libc::c_int {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return -1 };
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) }
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    if kill(pid, signal) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The thread id of the thread named `name` in process `pid`.
pub fn thread_named(pid: u32, name: &str) -> libc::pid_t {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let task = task.expect("a task entry");
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return task.file_name().to_str().and_then(|name| name.parse().ok()).expect("a numeric thread id");
        }
    }
    panic!("no thread {name} in process {pid}");
}

/// One thread of a child process, stopped with ptrace (`PTRACE_SEIZE` +
/// `PTRACE_INTERRUPT` on that thread only; the rest of the process runs on) until this is
/// dropped, when it is detached and runs again.
pub struct StoppedThread(libc::pid_t);

impl StoppedThread {
    pub fn stop(tid: libc::pid_t) -> StoppedThread {
        // SAFETY: ptrace requests on a thread of our own child process; no memory is
        // passed. SEIZE attaches without stopping, INTERRUPT stops that thread only.
        let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) };
        assert_eq!(seized, 0, "PTRACE_SEIZE: {}", io::Error::last_os_error());
        // SAFETY: as above.
        let interrupted = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
        assert_eq!(interrupted, 0, "PTRACE_INTERRUPT: {}", io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for the stop of the thread we just interrupted; `status` lives
        // across the call.
        let waited = unsafe { libc::waitpid(tid, &raw mut status, libc::__WALL) };
        assert_eq!(waited, tid, "waitpid: {}", io::Error::last_os_error());
        StoppedThread(tid)
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        // SAFETY: detaching from the thread this test attached to; it resumes.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, 0, 0) };
    }
}

/// A running `sluice serve`. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Server {
    child: Option<Child>,
    pub ingest: SocketAddr,
    /// The TLS listener (`ingest_tls=` in the ready line), when configured.
    pub ingest_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

/// Parses `ingest=ADDR` and `admin=ADDR` from the ready line.
fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("sluice: listening ")?;
    let mut ingest = None;
    let mut admin = None;
    for word in rest.split_whitespace() {
        if let Some(addr) = word.strip_prefix("ingest=") {
            ingest = addr.parse().ok();
        } else if let Some(addr) = word.strip_prefix("admin=") {
            admin = addr.parse().ok();
        }
    }
    Some((ingest?, admin?))
}

/// Reads a child's stderr on a thread: echoes each line as `[label] line`, appends it to
/// `into`, then shows it to `on_line`.
pub fn collect_stderr(
    pipe: std::process::ChildStderr,
    label: String,
    into: Arc<Mutex<String>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{label}] {line}");
            {
                let mut text = into.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
            on_line(&line);
        }
    })
}

impl Server {
    pub fn start(config: &Path) -> Server {
        Server::start_with_env(config, &[])
    }

    /// Starts with extra environment variables (a fake `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    /// Logs are text lines so the tests can read them; `--log-format` defaults to JSON
    /// on a pipe (tests/logging.rs checks that format).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--log-format", "text"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice serve");
        let stderr_pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let collected = Arc::clone(&stderr);
        let pid = child.id();
        let mut ready_tx = Some(ready_tx);
        let stderr_thread = collect_stderr(stderr_pipe, format!("sluice {pid}"), collected, move |line| {
            if let Some(addrs) = parse_ready_line(line)
                && let Some(tx) = ready_tx.take()
            {
                let _ = tx.send(addrs);
            }
        });
        let mut server = Server {
            child: Some(child),
            ingest: ([0, 0, 0, 0], 0).into(),
            ingest_tls: None,
            admin: ([0, 0, 0, 0], 0).into(),
            stderr,
            stderr_thread: Some(stderr_thread),
        };
        match ready_rx.recv_timeout(Duration::from_millis(READY_TIMEOUT_MS)) {
            Ok((ingest, admin)) => {
                server.ingest = ingest;
                server.admin = admin;
                // The ready line is collected before it is reported.
                server.ingest_tls = server
                    .stderr_text()
                    .lines()
                    .filter(|line| line.starts_with("sluice: listening "))
                    .flat_map(str::split_whitespace)
                    .find_map(|word| word.strip_prefix("ingest_tls=")?.parse().ok());
                server
            }
            Err(_) => {
                let status = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if status.is_some()
                    && let Some(thread) = server.stderr_thread.take()
                {
                    let _ = thread.join();
                }
                panic!("sluice serve did not become ready (exit: {status:?}); stderr:\n{}", server.stderr_text());
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Everything the server printed to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.ingest)
    }

    pub fn admin_client(&self) -> Client {
        Client::connect(self.admin)
    }

    /// Sends SIGTERM without waiting.
    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        signal(self.pid(), libc::SIGHUP).unwrap_or_else(|error| panic!("kill(SIGHUP) failed: {error}"));
    }

    /// Waits until stderr has contained `needle` `count` times (at most 10 s).
    pub fn wait_for_stderr(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stderr_text().matches(needle).count() < count {
            assert!(Instant::now() < deadline, "no {needle:?} on stderr:\n{}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sigterm(&self) {
        signal(self.pid(), libc::SIGTERM).unwrap_or_else(|error| panic!("kill(SIGTERM) failed: {error}"));
    }

    /// Waits for the process to exit on its own, at most `EXIT_TIMEOUT_MS`.
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server running");
        let deadline = Instant::now() + Duration::from_millis(EXIT_TIMEOUT_MS);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                if let Some(thread) = self.stderr_thread.take() {
                    let _ = thread.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                panic!("sluice serve did not exit within {EXIT_TIMEOUT_MS} ms; stderr:\n{}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// SIGKILL (kill -9) and reap: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `sluice` with `args` and returns its output.
pub fn run_sluice(args: &[&str]) -> Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("run sluice")
}

pub use crate::tail::tail;
