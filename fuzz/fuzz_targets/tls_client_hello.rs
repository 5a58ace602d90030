//! The ClientHello version reader (`net::tls::hello::offered`), which reads the first
//! bytes of every TLS connection before rustls does. Arbitrary bytes: it never panics; a
//! verdict other than `Unknown` needs a whole handshake record at the start, so every
//! shorter prefix of such an input is `Unknown`, and bytes after the record change
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::net::tls::hello::{Offered, offered};

fuzz_target!(|data: &[u8]| {
    let verdict = offered(data);
    if verdict == Offered::Unknown {
        return;
    }
    assert_eq!(data[0], 22, "a verdict without a handshake record");
    let record_len = 5 + usize::from(u16::from_be_bytes([data[3], data[4]]));
    assert!(record_len <= data.len());
    for cut in 0..record_len {
        assert_eq!(offered(&data[..cut]), Offered::Unknown, "a verdict from {cut} of {record_len} record bytes");
    }
    let mut longer = data[..record_len].to_vec();
    longer.extend_from_slice(b"trailing bytes of the next record");
    assert_eq!(offered(&longer), verdict);
});
