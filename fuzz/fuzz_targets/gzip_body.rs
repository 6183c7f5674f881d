//! Drive the gateway's body reading — `Content-Encoding`, the wire cap, the streaming capped
//! gunzip — with arbitrary bytes split into arbitrary frames, then decode what comes out as a
//! report. Checks: no panic; the decoded body never exceeds the cap; acceptance does not depend
//! on how the body was split into frames (which of several refusals comes first may); an
//! identity body comes out unchanged.
#![no_main]

use futures::executor::block_on;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

const ENCODINGS: [Option<&str>; 5] = [
    None,
    Some("gzip"),
    Some("x-gzip"),
    Some("identity"),
    Some("GZIP, identity"),
];

fuzz_target!(|input: &[u8]| {
    let [selector, frame, cap, body @ ..] = input else {
        return;
    };
    // Caps small enough that a short input can expand past them.
    let max_decoded = 1 + u64::from(*cap) * 64;
    let max_compressed = 1 + u64::from(*cap) * 16;
    let mut headers = HeaderMap::new();
    let encoding = ENCODINGS[usize::from(selector % 5)];
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if selector & 0x80 != 0 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let frame = usize::from(*frame).max(1);
    let chunks: Vec<Vec<u8>> = body.chunks(frame).map(<[u8]>::to_vec).collect();

    let split = block_on(gateway::read_body_for_fuzzing(
        &headers,
        chunks,
        max_compressed,
        max_decoded,
    ));
    let whole = block_on(gateway::read_body_for_fuzzing(
        &headers,
        vec![body.to_vec()],
        max_compressed,
        max_decoded,
    ));
    match (&split, &whole) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the frames changed the decoded body"),
        // A body can be refused for more than one reason (invalid gzip early, and over the wire
        // cap in total): which one is found first depends on the frames, but never the class.
        (Err(a), Err(b)) => assert!(
            a.status().is_client_error() && b.status().is_client_error(),
            "a refusal that is not the client's fault: {a:?} / {b:?}"
        ),
        _ => panic!("the frames changed the outcome: {split:?} vs {whole:?}"),
    }
    if let Ok(decoded) = split {
        assert!(
            decoded.len() as u64 <= max_decoded,
            "{} bytes over the cap {max_decoded}",
            decoded.len()
        );
        if matches!(encoding, None | Some("identity")) {
            assert_eq!(decoded, body, "an identity body must come out unchanged");
        }
        let _ = report::decode(&decoded);
    }
});
