//! The lines of an NDJSON batch body (`POST /v1/events/batch`).

/// Splits an NDJSON body into its event lines: `\n` separates, a `\r` before it is
/// dropped, and blank (all ASCII whitespace) lines are skipped. Records at most `max`
/// ranges in `spans` (cleared first) and returns how many lines there are, counting
/// on past `max` only to `max + 1`, so a caller can tell "too many" without scanning a
/// hostile body to its end twice. Uses SIMD `memchr`: this runs over every batch byte.
pub fn ndjson_lines(body: &[u8], spans: &mut Vec<std::ops::Range<usize>>, max: usize) -> usize {
    spans.clear();
    let mut count = 0;
    let mut start = 0;
    // Bounded: each pass moves `start` past one newline or to the end of the body.
    while start < body.len() && count <= max {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |at| start + at);
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        if !body[start..line_end].trim_ascii().is_empty() {
            count += 1;
            if count <= max {
                spans.push(start..line_end);
            }
        }
        start = end + 1;
    }
    count
}
