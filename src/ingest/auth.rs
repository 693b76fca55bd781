//! Ingest credentials: bearer tokens read from files, each optionally limited to CloudEvent
//! `source` patterns.

use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

use crate::config::TokenConfig;
use crate::secret_file::{read_secret_file, SecretFileError};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A token file could not be read, or is empty.
    #[error("token {name:?}: token file {source}")]
    File {
        /// The token's name (never its value).
        name: String,
        /// What is wrong with the file; names it.
        source: SecretFileError,
    },
}

/// One loaded token. Only its digest is kept, and comparison is constant-time over digests.
#[derive(Debug)]
pub struct IngestToken {
    /// For logs; never the secret.
    pub name: String,
    digest: [u8; 32],
    /// Source globs this token may post; empty = any source.
    sources: Vec<WildMatch>,
}

impl IngestToken {
    pub fn permits_source(&self, source: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|p| p.matches(source))
    }
}

/// Who may post. `Open` when no token is configured (loopback, or explicitly insecure).
#[derive(Debug)]
pub enum IngestAuth {
    Open,
    Tokens(Vec<IngestToken>),
}

/// Why a request was not authenticated (HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <token> or ?access_token=<token>")]
    Missing,
    #[error("the presented token is not valid")]
    Invalid,
}

impl IngestAuth {
    pub fn load(tokens: &[TokenConfig]) -> Result<Self, CredentialError> {
        if tokens.is_empty() {
            return Ok(IngestAuth::Open);
        }
        tokens
            .iter()
            .map(|t| {
                let secret = read_secret_file(&t.file).map_err(|source| CredentialError::File {
                    name: t.name.clone(),
                    source,
                })?;
                Ok(IngestToken {
                    name: t.name.clone(),
                    digest: Sha256::digest(secret.as_bytes()).into(),
                    sources: t.sources.iter().map(|p| WildMatch::new(p)).collect(),
                })
            })
            .collect::<Result<_, _>>()
            .map(IngestAuth::Tokens)
    }

    pub fn requires_credentials(&self) -> bool {
        matches!(self, IngestAuth::Tokens(_))
    }

    /// `Ok(None)` when authentication is off; `Ok(Some(token))` for a valid token.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Option<&IngestToken>, AuthError> {
        let IngestAuth::Tokens(tokens) = self else {
            return Ok(None);
        };
        let presented = presented.ok_or(AuthError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        tokens
            .iter()
            .find(|t| constant_time_eq(&t.digest, &digest))
            .map(Some)
            .ok_or(AuthError::Invalid)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token from `Authorization: Bearer ...`, else from the `access_token` query parameter.
pub fn presented_token<'a>(
    authorization: Option<&'a str>,
    query: &'a str,
) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(value) = authorization {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| std::borrow::Cow::Borrowed(token.trim()));
    }
    form_pairs(query)
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn form_pairs(
    query: &str,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

fn form_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let replaced = s.replace('+', " ");
    let bytes = replaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn token_file(secret: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{secret}").unwrap();
        f
    }

    #[test]
    fn tokens_are_checked_and_limited_to_sources() {
        let billing = token_file("s3cret");
        let auth = IngestAuth::load(&[TokenConfig {
            name: "billing".into(),
            file: billing.path().into(),
            sources: vec!["//billing.acme.com/*".into()],
        }])
        .unwrap();
        assert_eq!(auth.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            auth.authenticate(Some("nope")).unwrap_err(),
            AuthError::Invalid
        );
        let t = auth.authenticate(Some("s3cret")).unwrap().unwrap();
        assert_eq!(t.name, "billing");
        assert!(t.permits_source("//billing.acme.com/invoices"));
        assert!(!t.permits_source("//crm.acme.com/x"));
    }

    #[test]
    fn empty_token_file_is_an_error() {
        let empty = token_file("  ");
        let err = IngestAuth::load(&[TokenConfig {
            name: "x".into(),
            file: empty.path().into(),
            sources: vec![],
        }])
        .unwrap_err();
        assert!(
            matches!(
                err,
                CredentialError::File {
                    source: SecretFileError::Empty { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn token_from_header_or_query() {
        assert_eq!(
            presented_token(Some("Bearer abc"), "").as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented_token(Some("bearer  abc "), "").as_deref(),
            Some("abc")
        );
        assert_eq!(presented_token(Some("Basic abc"), "access_token=x"), None);
        assert_eq!(
            presented_token(None, "a=1&access_token=t%2Bk+n").as_deref(),
            Some("t+k n")
        );
        assert_eq!(presented_token(None, "a=1"), None);
    }
}
