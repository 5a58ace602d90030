//! One server connection's TLS state. It does no I/O: the shard hands it the ciphertext
//! of each receive completion and gets plaintext appended to the connection's input
//! buffer, and before each send it turns the plaintext answers into the ciphertext the
//! send carries. The framer and the handler never see the difference.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// What one receive did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The handshake finished while processing these bytes.
    pub handshake_completed: bool,
    /// The peer sent `close_notify`: no more plaintext will come.
    pub peer_closed: bool,
}

pub struct Session {
    conn: ServerConnection,
    /// `close_notify` is queued (or must not be: the session failed).
    close_notify_queued: bool,
}

impl Session {
    pub fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // The shard drains rustls's outgoing buffer into the send buffer after every
        // write and bounds what waits with its own output high-water mark, so rustls's
        // own limit (64 KiB) would only make a large batch answer fail half-written.
        conn.set_buffer_limit(None);
        Ok(Session { conn, close_notify_queued: false })
    }

    /// Feeds received ciphertext and appends the plaintext it carried to `plaintext`.
    /// On an error the session has queued the alert to send (see [`Session::seal`]) and
    /// the connection must close once it is sent; bytes after a `close_notify` are ignored.
    pub fn receive(&mut self, mut ciphertext: &[u8], plaintext: &mut Vec<u8>) -> Result<Received, rustls::Error> {
        let was_handshaking = self.conn.is_handshaking();
        let mut peer_closed = false;
        while !ciphertext.is_empty() {
            // read_tls takes at most one buffer's worth (about 16 KiB) per call.
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => return Err(self.fail(rustls::Error::General(error.to_string()))),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => return Err(self.fail(error)),
            };
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = plaintext.len();
                plaintext.resize(start + ready, 0);
                if let Err(error) = self.conn.reader().read_exact(&mut plaintext[start..]) {
                    plaintext.truncate(start);
                    return Err(self.fail(rustls::Error::General(error.to_string())));
                }
            }
            peer_closed |= state.peer_has_closed();
        }
        Ok(Received { handshake_completed: was_handshaking && !self.conn.is_handshaking(), peer_closed })
    }

    fn fail(&mut self, error: rustls::Error) -> rustls::Error {
        self.close_notify_queued = true;
        error
    }

    /// Encrypts `plaintext` (if any), queues `close_notify` when `closing`, and appends
    /// every TLS record waiting to be sent (handshake, alerts, data) to `wire`.
    pub fn seal(&mut self, plaintext: &[u8], closing: bool, wire: &mut Vec<u8>) -> io::Result<()> {
        if !plaintext.is_empty() {
            self.conn.writer().write_all(plaintext)?;
        }
        if closing {
            self.queue_close_notify();
        }
        while self.conn.wants_write() {
            self.conn.write_tls(wire)?;
        }
        Ok(())
    }

    /// Queues `close_notify` once (never after a failure: the alert already said it).
    pub fn queue_close_notify(&mut self) {
        if !self.close_notify_queued {
            self.close_notify_queued = true;
            self.conn.send_close_notify();
        }
    }

    /// TLS records (handshake, alerts) wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The identity of the client's verified certificate, once the handshake is done.
    pub fn peer_identity(&self) -> Option<Box<str>> {
        let chain = self.conn.peer_certificates()?;
        super::identity::client_identity(chain.first()?.as_ref())
    }
}
