//! Helpers the record-codec targets share (`mod common;`): building a record's parts
//! from the input, and the checks on a decoded record and on an encoded one.

use std::fmt::Debug;

/// `data` after its first byte, split into `count` parts at NUL bytes (the last part
/// keeps any further NULs; missing parts are empty). If the first byte's top bit is set,
/// part `first % count` is repeated to at least `2^(14 + (first >> 4 & 7))` bytes (16 KiB
/// to 2 MiB), so short inputs reach the u16 length fields and the payload limits.
pub fn parts(data: &[u8], count: usize) -> Vec<Vec<u8>> {
    let Some((&first, rest)) = data.split_first() else { return vec![Vec::new(); count] };
    let mut parts: Vec<Vec<u8>> = rest.splitn(count, |&b| b == 0).map(<[u8]>::to_vec).collect();
    parts.resize(count, Vec::new());
    if first & 0x80 != 0 {
        let part = &mut parts[usize::from(first) % count];
        let unit = if part.is_empty() { b"~".to_vec() } else { part.clone() };
        let target = 1usize << (14 + (first >> 4 & 7));
        *part = unit.repeat(target.div_ceil(unit.len()));
    }
    parts
}

/// The `N` little-endian bytes at `at` in `bytes`, zero-padded past its end.
pub fn le_bytes<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let available = bytes.get(at..).unwrap_or_default();
    let len = available.len().min(N);
    out[..len].copy_from_slice(&available[..len]);
    out
}

/// True if `part` lies inside `whole` (an empty part may be anywhere).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let at = part.as_ptr() as usize;
    part.is_empty() || (start <= at && at + part.len() <= end)
}

/// A record `decode` took from `data` using `used` bytes: `used` is within `data`, every
/// part lies in `data[..used]`, and `encode` gives exactly those bytes back.
pub fn check_decoded<E: Debug>(data: &[u8], used: usize, parts: &[&[u8]], encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) {
    assert!(used <= data.len(), "used {used} of {}", data.len());
    assert!(parts.iter().all(|part| within(part, &data[..used])), "a part outside the record");
    let mut again = Vec::new();
    encode(&mut again).expect("a decoded record encodes");
    assert_eq!(again, &data[..used], "decode then encode changed the record");
}

/// `encode` after three bytes already in the buffer: with `refused` (what the limits
/// say it must answer) it fails so and appends nothing; otherwise it succeeds and
/// `decodes_back` checks what it appended.
pub fn check_encoded<E: Debug + PartialEq>(
    refused: Option<E>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    decodes_back: impl FnOnce(&[u8]),
) {
    let mut out = vec![0xaa; 3];
    let result = encode(&mut out);
    match refused {
        Some(error) => {
            assert_eq!(result, Err(error));
            assert_eq!(out.len(), 3, "a refused record appended bytes");
        }
        None => {
            result.expect("a record within the limits encodes");
            decodes_back(&out[3..]);
        }
    }
}
