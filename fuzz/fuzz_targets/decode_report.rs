//! Decode and validate arbitrary bytes as a report body, as the gateway does
//! for every request. Whatever is accepted must re-encode to JSON that decodes
//! to the same report: one report, one meaning, whichever path it takes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(valid) = report::decode(body) {
        let again = serde_json::to_vec(valid.report()).expect("a report always serializes");
        let reparsed = report::decode(&again).expect("a re-encoded valid report decodes");
        assert_eq!(reparsed, valid);
    }
});
