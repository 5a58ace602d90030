//! The bridge's own `/metrics` (Prometheus text) and `/healthz`, on a loopback listener
//! served by one thread. The forwarding loop renders the page once per tick; a scrape
//! only copies it, so a slow or hostile scraper cannot hold the loop up.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The page the loop rendered last.
#[derive(Clone, Default)]
pub struct Page(Arc<Mutex<String>>);

impl Page {
    pub fn set(&self, text: String) {
        if let Ok(mut page) = self.0.lock() {
            *page = text;
        }
    }

    fn get(&self) -> String {
        self.0.lock().map(|page| page.clone()).unwrap_or_default()
    }
}

/// Binds `addr` and serves `page` from a thread; returns the bound address.
pub fn serve(addr: SocketAddr, page: Page) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("bridge-metrics".to_owned()).spawn(move || {
        loop {
            match listener.accept() {
                Ok((stream, _)) => answer(stream, &page),
                // Out of descriptors and the like: do not spin.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })?;
    Ok(bound)
}

/// One request, one answer, then close: bounded head, bounded time (2 s for the whole
/// head, however slowly it trickles in).
fn answer(mut stream: TcpStream, page: &Page) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 2048];
    let mut filled = 0;
    while filled < head.len() && !head[..filled].windows(4).any(|window| window == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut head[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(read) => filled += read,
        }
    }
    let line = head[..filled].split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, kind, body) = match line {
        b"GET /metrics HTTP/1.1" | b"GET /metrics HTTP/1.0" => (200, "text/plain; version=0.0.4", page.get()),
        b"GET /healthz HTTP/1.1" | b"GET /healthz HTTP/1.0" => (200, "text/plain", "ok\n".to_owned()),
        _ if line.starts_with(b"GET ") => (404, "text/plain", "not found\n".to_owned()),
        _ => (400, "text/plain", "bad request\n".to_owned()),
    };
    let _ = crate::admin::respond(&mut stream, status, kind, &body);
}

/// A Prometheus label value: at most 200 bytes of `text`, escaped as `/metrics` escapes.
pub fn label(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 8);
    crate::metrics::escape_into(&mut out, &text[..end], true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn serves_the_page_and_nothing_else() {
        let page = Page::default();
        page.set("sluice_bridge_up 1\n".to_owned());
        let addr = serve("127.0.0.1:0".parse().unwrap(), page).unwrap();
        let get = |request: &[u8]| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(request).unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            text
        };
        assert!(get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("\r\n\r\nsluice_bridge_up 1\n"));
        assert!(get(b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(get(b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn labels_cannot_break_the_page() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(label(&"x".repeat(1000)).len() <= 201);
    }
}
