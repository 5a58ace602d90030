//! One client connection slot and the operation tokens of the client ring.

use std::collections::VecDeque;

use crate::tools::bench::response::ResponseParser;

/// What a completion belongs to, packed into the 64-bit user_data like the server's
/// tokens: operation (8 bits), slot (24 bits), the slot's generation (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Connect,
    Send,
    Recv,
    /// The link timeout guarding a connect; its own completion carries nothing.
    ConnectTimeout,
}

pub const SLOTS_MAX: usize = 1 << 24;

pub fn token(op: Op, slot: u32, generation: u32) -> u64 {
    let kind: u64 = match op {
        Op::Connect => 1,
        Op::Send => 2,
        Op::Recv => 3,
        Op::ConnectTimeout => 4,
    };
    debug_assert!((slot as usize) < SLOTS_MAX);
    kind << 56 | u64::from(slot) << 32 | u64::from(generation)
}

pub fn decode(data: u64) -> Option<(Op, u32, u32)> {
    let op = match data >> 56 {
        1 => Op::Connect,
        2 => Op::Send,
        3 => Op::Recv,
        4 => Op::ConnectTimeout,
        _ => return None,
    };
    Some((op, ((data >> 32) as u32) & (SLOTS_MAX as u32 - 1), data as u32))
}

/// Load connections carry the measured requests; idle ones only stay open and ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Load,
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// No socket; (re)connect at or after `retry_at_ns`.
    Down {
        retry_at_ns: u64,
    },
    Connecting,
    /// TCP is up and the TLS handshake is running; no request is written yet.
    Handshaking,
    Open,
    /// Shut down; the socket is closed once its operations have completed.
    Closing {
        retry_delay_ns: u64,
    },
}

/// A request written (or queued to be written) and not answered yet.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    /// Index in the plan, or [`PING`].
    pub index: u32,
    /// Where latency is measured from: the intended send time (open loop) or the time the
    /// request was handed to the connection (closed loop).
    pub start_ns: u64,
}

/// `Waiting::index` of an idle connection's `GET /healthz`.
pub const PING: u32 = u32::MAX;

pub struct Conn {
    pub role: Role,
    pub state: ConnState,
    pub socket: Option<socket2::Socket>,
    pub generation: u32,
    /// A connect was started at least once (the initial connect phase tries each once).
    pub attempted: bool,
    pub ever_opened: bool,
    pub connect_inflight: bool,
    pub send_inflight: bool,
    pub recv_inflight: bool,
    pub flush_queued: bool,
    pub rearm_queued: bool,
    /// Bytes queued for the next send.
    pub output: Vec<u8>,
    /// Bytes of the send in flight; the kernel reads them until its completion arrives,
    /// so they are only touched again after it.
    pub sending: Vec<u8>,
    pub sent: usize,
    pub parser: ResponseParser,
    /// The TLS session of a `--tls` run; `output` stays plaintext and is encrypted into
    /// `sending` when a send starts.
    pub tls: Option<Box<rustls::ClientConnection>>,
    pub waiting: VecDeque<Waiting>,
    /// Last time this connection made progress (opened, or an answer arrived) while
    /// requests were waiting; no progress for `--timeout` is a timeout.
    pub progress_ns: u64,
}

impl Conn {
    pub fn new(role: Role) -> Conn {
        Conn {
            role,
            state: ConnState::Down { retry_at_ns: 0 },
            socket: None,
            generation: 0,
            attempted: false,
            ever_opened: false,
            connect_inflight: false,
            send_inflight: false,
            recv_inflight: false,
            flush_queued: false,
            rearm_queued: false,
            output: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            parser: ResponseParser::default(),
            tls: None,
            waiting: VecDeque::new(),
            progress_ns: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state == ConnState::Open
    }

    /// Connected: open, or still in its TLS handshake (it sends and receives).
    pub fn is_live(&self) -> bool {
        matches!(self.state, ConnState::Open | ConnState::Handshaking)
    }

    /// No operation of this slot is in flight in the kernel.
    pub fn is_quiet(&self) -> bool {
        !self.connect_inflight && !self.send_inflight && !self.recv_inflight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (op, slot, generation) in
            [(Op::Connect, 0, 0), (Op::Send, 7, u32::MAX), (Op::Recv, SLOTS_MAX as u32 - 1, 3), (Op::ConnectTimeout, 12, 1)]
        {
            assert_eq!(decode(token(op, slot, generation)), Some((op, slot, generation)));
        }
        assert_eq!(decode(0), None);
    }
}
