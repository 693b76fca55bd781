//! The CloudEvents HTTP binding (`decode_request`) on arbitrary requests: every content mode
//! is reached through the `Content-Type` the input names. Properties: decoding never panics, and
//! whatever decodes survives our own encoders unchanged, in structured and in binary mode.
//!
//! Input: a raw HTTP/1.1 request head (request line, `Name: value` lines) and body, separated
//! by an empty line, as in the CloudEvents conformance features the corpus is seeded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_gateway::cloudevents::{
    decode_request, encode_binary, encode_structured, CloudEvent, Data,
};

fn split_request(data: &[u8]) -> (Vec<(String, Vec<u8>)>, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &data[data.len()..]),
    };
    let headers = head
        .split(|b| *b == b'\n')
        .skip(1) // the request line
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?.trim().to_owned();
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    (headers, body)
}

fn data_bytes(data: Option<Data>) -> Option<Vec<u8>> {
    data.map(|data| match data {
        Data::Json(value) => serde_json::to_vec(&value).expect("JSON"),
        Data::Text(text) => text.into_bytes(),
        Data::Binary(bytes) => bytes,
    })
}

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split_request(data);
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    let Ok((_, events)) = decode_request(pairs, body) else {
        return;
    };
    for event in events {
        let (content_type, structured) = encode_structured(&event);
        let (_, again) = decode_request([("content-type", content_type.as_bytes())], &structured)
            .expect("a structured event we encoded decodes");
        assert_eq!(again, vec![event.clone()], "structured round trip");

        // In binary mode `Content-Type` is the datacontenttype, so JSON data without one comes
        // back as `application/json`, which is what the JSON format says it means.
        // HTTP trims a header value's surrounding white space, and `Content-Type` is not a
        // percent-encoded `ce-` header, so a datacontenttype keeps only its trimmed text.
        let mut expected = event.clone();
        if expected.datacontenttype.is_none() && matches!(expected.data, Some(Data::Json(_))) {
            expected.datacontenttype = Some("application/json".to_owned());
        }
        if let Some(content_type) = &mut expected.datacontenttype {
            *content_type = content_type.trim().to_owned();
        }
        let (binary_headers, binary_body) = encode_binary(&event);
        let pairs = binary_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()));
        let (_, again) =
            decode_request(pairs, &binary_body).expect("a binary event we encoded decodes");
        // The body's media type decides how binary-mode data is read back (JSON, text or
        // bytes), so the data compares as the bytes on the wire.
        let as_bytes = |mut event: CloudEvent| {
            let bytes = data_bytes(event.data.take());
            (event, bytes)
        };
        let again: Vec<_> = again.into_iter().map(as_bytes).collect();
        assert_eq!(again, vec![as_bytes(expected)], "binary round trip");
    }
});
