//! Ingest credentials: bearer tokens and Standard Webhooks signing secrets read from files,
//! each optionally scoped to CloudEvent `source` patterns, tenant patterns and actions, and
//! rate limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

use super::rate_limit::TokenBucket;
use super::signature::{self, SignatureError, SignatureHeaders, Verified};
use crate::config::{SigningSecretConfig, TokenConfig};
use crate::secret_file::{read_secret_file, SecretFileError};

/// What a credential may post. Every list empty means anything.
#[derive(Debug, Default)]
pub struct Scope {
    /// Source globs.
    sources: Vec<WildMatch>,
    /// Tenant globs.
    tenants: Vec<WildMatch>,
    /// Exact action names.
    actions: Vec<String>,
}

impl Scope {
    pub fn new(sources: &[String], tenants: &[String], actions: &[String]) -> Self {
        Scope {
            sources: sources.iter().map(|p| WildMatch::new(p)).collect(),
            tenants: tenants.iter().map(|p| WildMatch::new(p)).collect(),
            actions: actions.to_vec(),
        }
    }

    /// A source with a `.` or `..` path segment (plain or percent-encoded) never matches a glob:
    /// `//billing/../crm` would match `//billing/*` though it names another system.
    pub fn permits_source(&self, source: &str) -> bool {
        if self.sources.is_empty() {
            return true;
        }
        let dot_segment = source.split(['/', '\\']).any(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            decoded == "." || decoded == ".."
        });
        !dot_segment && self.sources.iter().any(|p| p.matches(source))
    }

    pub fn permits_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|p| p.matches(tenant))
    }

    pub fn permits_action(&self, action: &str) -> bool {
        self.actions.is_empty() || self.actions.iter().any(|a| a == action)
    }
}

fn bucket(rate: Option<f64>, burst: Option<f64>) -> Option<TokenBucket> {
    rate.map(|rate| TokenBucket::new(rate, burst.unwrap_or(rate.max(1.0)), Instant::now()))
}

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
    /// A signing secret file could not be read, or is empty.
    #[error("signing secret {name:?}: secret file {source}")]
    SigningSecretFile {
        /// The secret's name (never its value).
        name: String,
        /// What is wrong with the file; names it.
        source: SecretFileError,
    },
    /// A signing secret file does not hold a `whsec_<base64>` secret.
    #[error("signing secret file {path} (secret {name:?}): {reason}")]
    BadSecret {
        name: String,
        path: String,
        reason: String,
    },
}

/// One loaded token. Only its digest is kept, and comparison is constant-time over digests.
#[derive(Debug)]
pub struct IngestToken {
    /// For logs; never the secret.
    pub name: String,
    digest: [u8; 32],
    /// What this token may post.
    pub scope: Scope,
    /// Its own rate limit, when it has one.
    pub rate: Option<TokenBucket>,
}

impl IngestToken {
    pub fn permits_source(&self, source: &str) -> bool {
        self.scope.permits_source(source)
    }
}

/// Who may post. `Open` when no token is configured (loopback, or explicitly insecure).
#[derive(Debug)]
pub enum IngestAuth {
    Open,
    Tokens(Vec<IngestToken>),
}

/// Why a request was not authenticated (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send Authorization: Bearer <token> or ?access_token=<token>")]
    Missing,
    #[error("the presented token is not valid")]
    Invalid,
    #[error("the Authorization header is malformed: expected \"Bearer <token>\"")]
    Malformed,
    #[error("a Standard Webhooks signature is required (webhook-id, webhook-timestamp, webhook-signature)")]
    SignatureRequired,
    #[error("the signature is not valid: {0}")]
    Signature(#[from] SignatureError),
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
                    scope: Scope::new(&t.sources, &t.tenants, &t.actions),
                    rate: bucket(t.rate, t.burst),
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

/// The token from `Authorization: Bearer ...`; the `access_token` query parameter only when no
/// `Authorization` header is present. A header that is not valid text or not `Bearer <token>`
/// is [`AuthError::Malformed`], never "missing".
pub fn presented_token<'a>(
    authorization: Option<&'a [u8]>,
    query: &'a str,
) -> Result<Option<std::borrow::Cow<'a, str>>, AuthError> {
    if let Some(raw) = authorization {
        let value = std::str::from_utf8(raw).map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(Some(std::borrow::Cow::Borrowed(token)));
    }
    Ok(form_pairs(query)
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v))
}

/// One loaded signing secret.
#[derive(Debug)]
pub struct SigningSecret {
    /// For logs; never the secret.
    pub name: String,
    key: Vec<u8>,
    /// What messages signed with it may post.
    pub scope: Scope,
    /// Its own rate limit, when it has one.
    pub rate: Option<TokenBucket>,
}

/// Most `webhook-id`s remembered at once; a signed request beyond it is refused (429) until
/// old ids expire, rather than forgetting ids still inside the tolerance.
const MAX_REMEMBERED_IDS: usize = 100_000;

/// The Standard Webhooks side of ingest authentication.
#[derive(Debug)]
pub struct SignatureAuth {
    secrets: Vec<SigningSecret>,
    /// Bearer tokens alone are not enough.
    pub require_signature: bool,
    /// Seconds `webhook-timestamp` may be off, and how long an id is remembered.
    tolerance_secs: i64,
    /// `(secret index, webhook-id)` -> Unix second after which it may be forgotten.
    seen: Mutex<HashMap<(usize, String), i64>>,
}

/// Whether a verified message was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    First,
    Duplicate,
    /// Too many ids inside the tolerance to remember another.
    Full,
}

impl SignatureAuth {
    pub fn load(
        secrets: &[SigningSecretConfig],
        require_signature: bool,
        tolerance: std::time::Duration,
    ) -> Result<Self, CredentialError> {
        let secrets = secrets
            .iter()
            .map(|c| {
                let path = c.file.display().to_string();
                let text = read_secret_file(&c.file).map_err(|source| {
                    CredentialError::SigningSecretFile {
                        name: c.name.clone(),
                        source,
                    }
                })?;
                let key = signature::parse_secret(&text).map_err(|reason| {
                    CredentialError::BadSecret {
                        name: c.name.clone(),
                        path,
                        reason,
                    }
                })?;
                Ok(SigningSecret {
                    name: c.name.clone(),
                    key,
                    scope: Scope::new(&c.sources, &c.tenants, &c.actions),
                    rate: bucket(c.rate, c.burst),
                })
            })
            .collect::<Result<_, CredentialError>>()?;
        Ok(SignatureAuth {
            secrets,
            require_signature,
            tolerance_secs: i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX),
            seen: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Verifies the headers and body against every secret at `now` (Unix seconds).
    pub fn verify(
        &self,
        headers: SignatureHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(&SigningSecret, Verified), SignatureError> {
        let keys: Vec<&[u8]> = self.secrets.iter().map(|s| s.key.as_slice()).collect();
        let verified = signature::verify(&keys, headers, body, now, self.tolerance_secs)?;
        Ok((&self.secrets[verified.secret_index], verified))
    }

    /// Records a verified message's id; a second one inside the tolerance is a duplicate.
    pub fn remember(&self, verified: &Verified, now: i64) -> Replay {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = (verified.secret_index, verified.webhook_id.clone());
        if seen.get(&key).is_some_and(|until| *until >= now) {
            return Replay::Duplicate;
        }
        if seen.len() >= MAX_REMEMBERED_IDS {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= MAX_REMEMBERED_IDS {
                return Replay::Full;
            }
        }
        // The timestamp is within the tolerance of now, so a replay is refused by the timestamp
        // check once this entry expires.
        seen.insert(key, verified.timestamp.saturating_add(self.tolerance_secs));
        Replay::First
    }

    /// Forgets an id whose request failed before anything was stored, so a retry is not taken
    /// for a replay.
    pub fn forget(&self, verified: &Verified) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&(verified.secret_index, verified.webhook_id.clone()));
    }
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
            ..TokenConfig::default()
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
        for sneaky in [
            "//billing.acme.com/../crm",
            "//billing.acme.com/%2E%2e/crm",
            "//billing.acme.com/./x",
        ] {
            assert!(!t.permits_source(sneaky), "{sneaky}");
        }
    }

    #[test]
    fn scopes_limit_tenants_and_actions() {
        let scope = Scope::new(&[], &["acme-*".into()], &["upsert".into()]);
        assert!(scope.permits_tenant("acme-eu"));
        assert!(!scope.permits_tenant("globex"));
        assert!(scope.permits_action("upsert"));
        assert!(!scope.permits_action("delete"));
        assert!(Scope::default().permits_tenant("anything"));
    }

    #[test]
    fn empty_token_file_is_an_error() {
        let empty = token_file("  ");
        let err = IngestAuth::load(&[TokenConfig {
            name: "x".into(),
            file: empty.path().into(),
            ..TokenConfig::default()
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
        let token = |h: Option<&str>, q| {
            presented_token(h.map(str::as_bytes), q).map(|t| t.map(|t| t.into_owned()))
        };
        assert_eq!(token(Some("Bearer abc"), ""), Ok(Some("abc".into())));
        assert_eq!(token(Some("bearer  abc "), ""), Ok(Some("abc".into())));
        // A malformed header never falls back to the query parameter.
        for malformed in ["Basic abc", "Bearer", "Bearer  ", "abc"] {
            assert_eq!(
                token(Some(malformed), "access_token=x"),
                Err(AuthError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            presented_token(Some(b"Bearer \xff"), ""),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            token(None, "a=1&access_token=t%2Bk+n"),
            Ok(Some("t+k n".into()))
        );
        assert_eq!(token(None, "a=1"), Ok(None));
    }
}
