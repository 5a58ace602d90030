//! `sluice bench --request-templates`: a JSON Lines file of request templates
//! (`tools::bench::templates::TemplateFile::parse`). Arbitrary bytes: never panics; a file
//! that parses has at least one template, each written as one HTTP/1.1 request whose head
//! ends once and whose `Content-Length` is the body's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tools::bench::templates::TemplateFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = TemplateFile::parse(std::path::Path::new("fuzz.jsonl"), data) else { return };
    let (fewest, most) = file.events_range();
    assert!(fewest >= 1 && fewest <= most);
    let template = file.templates.first().expect("at least one template");
    let mut out = Vec::new();
    template.write_request("127.0.0.1:1", &mut out);
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = std::str::from_utf8(&out[..head_end]).expect("an ASCII head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a number");
    assert_eq!(out.len(), head_end + length, "the body follows the head whole");
    assert_eq!(length, template.body.len());
});
