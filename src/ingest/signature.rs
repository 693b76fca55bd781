//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, "Verifying webhooks"):
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")>`,
//! several space-separated for key rotation, the timestamp within a tolerance of now.
//!
//! Our own verifier rather than the `standardwebhooks` crate (1.0.1): the crate fixes the
//! tolerance at 5 minutes and reads the clock itself (no configurable tolerance, not a pure
//! function to test and fuzz), refuses bodies that are not UTF-8 (binary-mode CloudEvents may
//! not be), checks one secret per call without saying which matched, and brings a second base64
//! and a time crate. Its rules are kept: `whsec_` prefix optional, base64 secret, integer seconds,
//! a `v1` signature among the space-separated ones, constant-time comparison.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";

/// Why a signature was not accepted (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    #[error("webhook-timestamp is more than {tolerance_secs} s in the past")]
    Expired { tolerance_secs: i64 },
    #[error("webhook-timestamp is more than {tolerance_secs} s in the future")]
    Future { tolerance_secs: i64 },
    #[error("no webhook-signature matches a configured signing secret")]
    NoMatch,
}

/// The three headers as received (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureHeaders<'a> {
    pub id: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

/// A verified message: which secret matched, and the id to remember against replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub secret_index: usize,
    pub webhook_id: String,
    pub timestamp: i64,
}

/// Decodes a secret file's text: `whsec_<base64>` (the prefix is optional, as in the official
/// libraries).
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("not whsec_<base64>: {e}"))?;
    if key.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(key)
}

/// `v1,<base64 signature>` of a message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac_of(key);
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signature}")
}

fn hmac_of(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// Verifies a message against every key; a pure function of its inputs (`now` in Unix
/// seconds), so it can be tested and fuzzed without a clock.
pub fn verify(
    keys: &[&[u8]],
    headers: SignatureHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, SignatureError> {
    fn text<'h>(value: Option<&'h [u8]>, name: &'static str) -> Result<&'h str, SignatureError> {
        let value = value.ok_or(SignatureError::MissingHeader(name))?;
        std::str::from_utf8(value)
            .map(str::trim)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(SignatureError::MalformedHeader(name))
    }
    let id = text(headers.id, HEADER_ID)?;
    let timestamp_text = text(headers.timestamp, HEADER_TIMESTAMP)?;
    let signatures = text(headers.signature, HEADER_SIGNATURE)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(HEADER_TIMESTAMP))?;
    if now.saturating_sub(timestamp) > tolerance_secs {
        return Err(SignatureError::Expired { tolerance_secs });
    }
    if timestamp.saturating_sub(now) > tolerance_secs {
        return Err(SignatureError::Future { tolerance_secs });
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    for (secret_index, key) in keys.iter().enumerate() {
        for candidate in &candidates {
            let mut mac = hmac_of(key);
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            // `verify_slice` compares in constant time.
            if mac.verify_slice(candidate).is_ok() {
                return Ok(Verified {
                    secret_index,
                    webhook_id: id.to_owned(),
                    timestamp,
                });
            }
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference tests
    /// (libraries/python/standardwebhooks/tests and the Rust crate's README).
    #[test]
    fn known_answer_from_the_reference_implementation() {
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders {
            id: Some(id.as_bytes()),
            timestamp: Some(ts.as_bytes()),
            signature: Some(sig.as_bytes()),
        }
    }

    #[test]
    fn valid_wrong_expired_future_and_rotated() {
        let old = b"old-key".as_slice();
        let new = b"new-key".as_slice();
        let body = b"{}";
        let now = 1_700_000_000;
        let good = sign(new, "m1", now, body);
        let ts = now.to_string();
        assert_eq!(
            verify(&[old, new], headers("m1", &ts, &good), body, now, 300)
                .unwrap()
                .secret_index,
            1
        );
        assert_eq!(
            verify(&[old], headers("m1", &ts, &good), body, now, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(&[new], headers("m1", &ts, &good), b"{ }", now, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(&[new], headers("m1", &ts, &good), body, now + 301, 300),
            Err(SignatureError::Expired {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&[new], headers("m1", &ts, &good), body, now - 301, 300),
            Err(SignatureError::Future {
                tolerance_secs: 300
            })
        );
        // The window is inclusive: exactly `tolerance` away either side still verifies.
        assert!(verify(&[new], headers("m1", &ts, &good), body, now + 300, 300).is_ok());
        assert!(verify(&[new], headers("m1", &ts, &good), body, now - 300, 300).is_ok());
        let rotated = format!("{} {good}", sign(old, "m1", now, b"other"));
        assert!(verify(&[new], headers("m1", &ts, &rotated), body, now, 300).is_ok());
        assert_eq!(
            verify(&[new], headers("m1", "soon", &good), body, now, 300),
            Err(SignatureError::MalformedHeader(HEADER_TIMESTAMP))
        );
        assert_eq!(
            verify(&[new], SignatureHeaders::default(), body, now, 300),
            Err(SignatureError::MissingHeader(HEADER_ID))
        );
    }
}
