//! The Standard Webhooks verifier on arbitrary headers and bodies. Properties: verifying never
//! panics; a forged signature header never verifies; the signature `sign` makes for the same
//! id, timestamp and body always does, also beside garbage (key rotation sends several).
//!
//! Input: `webhook-id`, `webhook-timestamp`, `webhook-signature` and the body, separated by
//! newlines (the body is the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_gateway::ingest::signature::{sign, verify, SignatureHeaders};

const KEY: &[u8] = b"a fixed fuzzing key, 32 bytes...";
const NOW: i64 = 1_767_225_600;
const TOLERANCE: i64 = 300;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (Some(id), Some(timestamp), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let headers = SignatureHeaders {
        id: Some(id),
        timestamp: Some(timestamp),
        signature: Some(signature),
    };
    let forged = verify(&[KEY], headers, body, NOW, TOLERANCE);
    let (Ok(id), Ok(ts_text)) = (std::str::from_utf8(id), std::str::from_utf8(timestamp)) else {
        return;
    };
    let Ok(ts) = ts_text.parse::<i64>() else {
        return;
    };
    let genuine = sign(KEY, id, ts, body);
    assert!(
        forged.is_err() || signature.windows(genuine.len()).any(|w| w == genuine.as_bytes()),
        "a signature that is not ours verified"
    );
    // Header values arrive trimmed (HTTP strips the white space around them): sign what the
    // verifier will see.
    if ts.abs_diff(NOW) <= TOLERANCE as u64
        && !id.is_empty()
        && id == id.trim()
        && ts_text == ts.to_string()
    {
        let rotated = format!("v1,Zm9yZ2Vk {genuine}");
        let headers = SignatureHeaders {
            id: Some(id.as_bytes()),
            timestamp: Some(ts_text.as_bytes()),
            signature: Some(rotated.as_bytes()),
        };
        assert!(
            verify(&[b"another key", KEY], headers, body, NOW, TOLERANCE).is_ok(),
            "our own signature must verify"
        );
    }
});
