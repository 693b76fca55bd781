//! The operator CLI's side of the admin API. This module is the HTTP client: [`AdminClient`]
//! (one method per route, answers decoded into the [`api`](crate::admin::api) types) and its
//! [`ClientError`]s. [`commands`] holds what each CLI command does (`events`, `replay`, `skip`,
//! `tenants show|list`), [`render`] the tables, reports and progress they print. Everything here takes
//! plain settings ([`ClientSettings`], [`commands::Invocation`]); the command line that builds
//! them lives in `cli.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;

use crate::admin::api::{
    ActionRequest, BulkReplayRequest, DryRunResult, EventDetail, EventFilter, EventPage,
    EventStatus, ReplayJobList, ReplayJobStatus, ReplayJobView, ReplayResult, SkipResult,
    TenantFilter, TenantPage, TenantView,
};
use crate::secret_file::SecretFileError;

pub mod commands;
#[cfg(test)]
mod fake_api;
pub mod render;

/// Environment variable that may hold the admin token itself (`--token-file` wins over it).
pub const TOKEN_ENV: &str = "TENANT_GATEWAY_ADMIN_TOKEN";

/// Where the admin API is and how to authenticate to it: what every admin command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// The admin API's base URL (`http://127.0.0.1:8081`).
    pub server: String,
    /// File holding the bearer token; wins over `env_token`.
    pub token_file: Option<PathBuf>,
    /// The value of [`TOKEN_ENV`], if set: the token itself.
    pub env_token: Option<String>,
}

/// Longest error detail taken from a body that is not a problem document.
const MAX_DETAIL_CHARS: usize = 200;

/// Everything that can go wrong in an admin command. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--server` is not an http(s) URL.
    #[error("invalid server URL {url}: {reason}")]
    InvalidServer {
        /// As given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (e.g. no TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// `--token-file` could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `--token-file` holds only whitespace.
    #[error("token file {path} is empty")]
    EmptyTokenFile {
        /// The file.
        path: String,
    },
    /// The token variable is set to only whitespace.
    #[error("{TOKEN_ENV} is set but empty")]
    EmptyTokenEnv,
    /// No answer from the server (connection refused, DNS, TLS, timeout, reset).
    #[error("cannot reach the admin API at {server}: {reason}")]
    Unreachable {
        /// The `--server` URL.
        server: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The server answered with an error status; from its problem document when it sent one.
    #[error("{status} {title}: {detail}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The problem's title, or the status's reason phrase.
        title: String,
        /// The problem's detail, or the start of the body.
        detail: String,
        /// The problem's `type` URN, when the body was a problem document.
        problem_type: Option<String>,
    },
    /// A success answer whose body is not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    UnexpectedBody {
        /// The request URL.
        url: String,
        /// The decoding error.
        reason: String,
    },
    /// The command line asks for something the API cannot do.
    #[error("{0}")]
    Usage(String),
    /// stdout or stderr could not be written (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// The confirmation could not be read.
    #[error("cannot read the confirmation: {0}")]
    Input(std::io::Error),
    /// The operator did not confirm a bulk replay.
    #[error("aborted: nothing replayed")]
    Aborted,
    /// Some of the replays by id failed (each is reported on stderr).
    #[error("{failed} of {total} replays failed")]
    ReplaysFailed {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
    },
    /// A bulk replay job ended `failed` or `cancelled`.
    #[error("replay job {id} {status}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    JobEnded {
        /// The job.
        id: Uuid,
        /// `failed` or `cancelled`.
        status: ReplayJobStatus,
        /// Why it failed, as the server says.
        error: Option<String>,
    },
    /// Polling a running job failed; the job itself is not affected.
    #[error("lost track of replay job {job}, which goes on running on the server: {cause}")]
    Polling {
        /// The job.
        job: Uuid,
        /// The last poll's error.
        cause: Box<ClientError>,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem slug (`event-not-found`) of an error answer that carried a problem document.
    pub fn problem_slug(&self) -> Option<&str> {
        match self {
            ClientError::Api {
                problem_type: Some(t),
                ..
            } => Some(t.strip_prefix("urn:tenant-gateway:problem:").unwrap_or(t)),
            _ => None,
        }
    }

    /// Worth another try: the server may be restarting or busy.
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// The problem+json members the client uses (RFC 9457); the others are ignored.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    /// The problem type URN.
    #[serde(rename = "type")]
    problem_type: Option<String>,
    /// Short, fixed per type.
    title: Option<String>,
    /// This occurrence.
    detail: Option<String>,
}

/// Turn an error answer into a [`ClientError::Api`]: from its problem document, or, when a proxy
/// or another server answered, from the status and the start of the body.
fn problem_error(status: StatusCode, body: &[u8]) -> ClientError {
    let reason = status.canonical_reason().unwrap_or("Error");
    let problem = serde_json::from_slice::<ProblemBody>(body)
        .ok()
        .filter(|p| p.title.is_some() || p.detail.is_some());
    let (title, detail, problem_type) = match problem {
        Some(p) => (
            p.title
                .as_deref()
                .map_or_else(|| reason.to_owned(), one_line),
            p.detail.as_deref().map(one_line).unwrap_or_default(),
            p.problem_type,
        ),
        None => {
            let text = one_line(&String::from_utf8_lossy(body));
            (
                reason.to_owned(),
                text.chars().take(MAX_DETAIL_CHARS).collect(),
                None,
            )
        }
    };
    let detail = if detail.is_empty() {
        "(no detail)".to_owned()
    } else {
        detail
    };
    ClientError::Api {
        status: status.as_u16(),
        title,
        detail,
        problem_type,
    }
}

/// Collapse whitespace runs (newlines included) and drop control characters, so a message
/// stays on one line and cannot move the terminal's cursor.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The admin token: the content of `token_file` if given (one trailing newline dropped), else the trimmed `env_token`
/// (the value of [`TOKEN_ENV`]), else none (enough against a loopback-only admin listener).
pub fn load_token(
    token_file: Option<&Path>,
    env_token: Option<String>,
) -> Result<Option<String>, ClientError> {
    if let Some(path) = token_file {
        return match crate::secret_file::read_secret_file(path) {
            Ok(token) => Ok(Some(token)),
            Err(SecretFileError::Read { source, .. }) => Err(ClientError::TokenFile {
                path: path.display().to_string(),
                source,
            }),
            Err(SecretFileError::Empty { .. }) => Err(ClientError::EmptyTokenFile {
                path: path.display().to_string(),
            }),
        };
    }
    match env_token {
        Some(token) if token.trim().is_empty() => Err(ClientError::EmptyTokenEnv),
        Some(token) => Ok(Some(token.trim().to_owned())),
        None => Ok(None),
    }
}

/// A client of the admin API (`/admin/v1/*`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// Shared connection pool.
    http: reqwest::Client,
    /// The server's base URL; routes are appended to its path, so a prefix behind a proxy works.
    base: Url,
    /// Sent as `Authorization: Bearer`.
    token: Option<String>,
}

impl AdminClient {
    /// A client of the admin API at `server` (`http://127.0.0.1:8081`), sending `token` if any.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidServer {
            url: server.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(server).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected http://HOST[:PORT] or https://..."));
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .user_agent(concat!("tenant-gateway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Every route answers quickly (bulk replays run as jobs); a hung server should not
            // hang an operator's shell.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::HttpClient(innermost_cause(&e)))?;
        Ok(AdminClient { http, base, token })
    }

    /// A client configured by `settings`: the token from its file, else from the environment.
    pub fn from_settings(settings: &ClientSettings) -> Result<Self, ClientError> {
        let token = load_token(settings.token_file.as_deref(), settings.env_token.clone())?;
        AdminClient::new(&settings.server, token)
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /admin/v1/events`: one page of the events `filter` selects.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<EventPage, ClientError> {
        let mut url = self.url(&["admin", "v1", "events"]);
        {
            let mut query = url.query_pairs_mut();
            let conditions = [
                ("tenant", filter.tenant.as_deref()),
                ("action", filter.action.as_deref()),
                ("status", filter.status.map(EventStatus::as_str)),
                ("source", filter.source.as_deref()),
                ("since", filter.since.as_deref()),
                ("until", filter.until.as_deref()),
                ("workflowPhase", filter.workflow_phase.as_deref()),
            ];
            for (name, value) in conditions {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        // An empty query would leave a bare `?`.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// `GET /admin/v1/events/{eventId}`.
    pub async fn get_event(&self, event_id: Uuid) -> Result<EventDetail, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string()]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/events/{eventId}/replay`.
    pub async fn replay_event(
        &self,
        event_id: Uuid,
        reason: Option<&str>,
    ) -> Result<ReplayResult, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string(), "replay"]);
        let body = ActionRequest {
            reason: reason.map(str::to_owned),
        };
        self.call(self.request(Method::POST, url).json(&body)).await
    }

    /// `POST /admin/v1/events/{eventId}/skip`.
    pub async fn skip_event(
        &self,
        event_id: Uuid,
        reason: &str,
    ) -> Result<SkipResult, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string(), "skip"]);
        let body = ActionRequest {
            reason: Some(reason.to_owned()),
        };
        self.call(self.request(Method::POST, url).json(&body)).await
    }

    /// `GET /admin/v1/tenants`: one page of the tenants `filter` selects, in name order.
    pub async fn list_tenants(
        &self,
        filter: &TenantFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<TenantPage, ClientError> {
        let mut url = self.url(&["admin", "v1", "tenants"]);
        {
            let mut query = url.query_pairs_mut();
            let conditions = [
                ("lifecycle", filter.lifecycle.map(|l| l.as_str())),
                ("outcome", filter.outcome.map(|o| o.as_str())),
                ("action", filter.action.as_deref()),
            ];
            for (name, value) in conditions {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        // An empty query would leave a bare `?`.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// `GET /admin/v1/tenants/{tenant}`, with the latest `limit` events in its timeline.
    pub async fn get_tenant(
        &self,
        tenant: &str,
        limit: Option<u32>,
    ) -> Result<TenantView, ClientError> {
        let mut url = self.url(&["admin", "v1", "tenants", tenant]);
        if let Some(limit) = limit {
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/replays` as a dry run (`dryRun` is forced on): count and sample.
    pub async fn dry_run_replay(
        &self,
        request: &BulkReplayRequest,
    ) -> Result<DryRunResult, ClientError> {
        self.post_replays(request, true).await
    }

    /// `POST /admin/v1/replays` (`dryRun` is forced off): create a bulk replay job.
    pub async fn start_replay(
        &self,
        request: &BulkReplayRequest,
    ) -> Result<ReplayJobView, ClientError> {
        self.post_replays(request, false).await
    }

    /// `POST /admin/v1/replays` with `dryRun` set as given.
    async fn post_replays<T: serde::de::DeserializeOwned>(
        &self,
        request: &BulkReplayRequest,
        dry_run: bool,
    ) -> Result<T, ClientError> {
        let request = BulkReplayRequest {
            dry_run,
            ..request.clone()
        };
        let url = self.url(&["admin", "v1", "replays"]);
        self.call(self.request(Method::POST, url).json(&request))
            .await
    }

    /// `GET /admin/v1/replays`: the latest jobs, newest first.
    pub async fn list_replays(&self) -> Result<ReplayJobList, ClientError> {
        let url = self.url(&["admin", "v1", "replays"]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `GET /admin/v1/replays/{jobId}`.
    pub async fn get_replay(&self, job_id: Uuid) -> Result<ReplayJobView, ClientError> {
        let url = self.url(&["admin", "v1", "replays", &job_id.to_string()]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/replays/{jobId}/cancel`.
    pub async fn cancel_replay(&self, job_id: Uuid) -> Result<ReplayJobView, ClientError> {
        let url = self.url(&["admin", "v1", "replays", &job_id.to_string(), "cancel"]);
        self.call(self.request(Method::POST, url)).await
    }

    /// `GET /admin/openapi.json`.
    pub async fn get_openapi(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url(&["admin", "openapi.json"]);
        self.call(self.request(Method::GET, url)).await
    }

    /// The base URL with `segments` appended, each percent-encoded (a tenant name typed by an
    /// operator cannot change the route).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Cannot fail: `new` refused URLs that cannot be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send, and decode a success answer as `T`; anything else is a [`ClientError`].
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            server: self.base.as_str().trim_end_matches('/').to_owned(),
            reason: innermost_cause(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let url = response.url().to_string();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(problem_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::UnexpectedBody {
            url,
            reason: e.to_string(),
        })
    }
}

/// The last error in a source chain: `Connection refused (os error 111)` rather than reqwest's
/// `error sending request for url (...)`, which repeats what the message already says.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    one_line(&cause.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_become_one_line_errors() {
        let body = br#"{"type":"urn:tenant-gateway:problem:event-not-found","title":"Event not found","status":404,"detail":"no event 0190"}"#;
        let error = problem_error(StatusCode::NOT_FOUND, body);
        assert_eq!(error.to_string(), "404 Event not found: no event 0190");
        assert_eq!(error.status(), Some(404));
        assert_eq!(error.problem_slug(), Some("event-not-found"));

        let multi = br#"{"title":"Bad\nquery","detail":"limit:\n  must be <= 1000"}"#;
        assert_eq!(
            problem_error(StatusCode::BAD_REQUEST, multi).to_string(),
            "400 Bad query: limit: must be <= 1000"
        );
        // A proxy's page: the reason phrase and the start of the body.
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let error = problem_error(StatusCode::BAD_GATEWAY, html.as_bytes());
        let text = error.to_string();
        assert!(
            text.starts_with("502 Bad Gateway: <html> <body>xxx"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        assert_eq!(text.len(), "502 Bad Gateway: ".len() + MAX_DETAIL_CHARS);
        assert_eq!(error.problem_slug(), None);
        assert_eq!(
            problem_error(StatusCode::UNAUTHORIZED, b"").to_string(),
            "401 Unauthorized: (no detail)"
        );
    }

    #[test]
    fn tokens_come_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            load_token(Some(&file), Some("env".into()))
                .unwrap()
                .as_deref(),
            Some("s3cret"),
            "the file wins"
        );
        assert_eq!(
            load_token(None, Some(" env\n".into())).unwrap().as_deref(),
            Some("env")
        );
        assert_eq!(load_token(None, None).unwrap(), None);

        std::fs::write(&file, " \n").unwrap();
        let error = load_token(Some(&file), None).unwrap_err().to_string();
        assert_eq!(error, format!("token file {} is empty", file.display()));
        let missing = dir.path().join("missing");
        let error = load_token(Some(&missing), None).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("cannot read token file {}: ", missing.display())),
            "{error}"
        );
        assert_eq!(
            load_token(None, Some("  ".into())).unwrap_err().to_string(),
            "TENANT_GATEWAY_ADMIN_TOKEN is set but empty"
        );
    }

    #[test]
    fn routes_are_appended_to_the_server_path_and_encoded() {
        let client = AdminClient::new("https://ops.example/gateway/?x=1#f", None).unwrap();
        assert_eq!(
            client.url(&["admin", "v1", "tenants", "a/b?c"]).as_str(),
            "https://ops.example/gateway/admin/v1/tenants/a%2Fb%3Fc"
        );
        let client = AdminClient::new("http://127.0.0.1:8081", None).unwrap();
        assert_eq!(
            client.url(&["admin", "v1", "events"]).as_str(),
            "http://127.0.0.1:8081/admin/v1/events"
        );
        for bad in [
            "127.0.0.1:8081",
            "ftp://host",
            "not a url",
            "mailto:ops@example",
        ] {
            let error = AdminClient::new(bad, None).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid server URL {bad}: ")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // Port 1 on loopback: nothing listens there.
        let client = AdminClient::new("http://127.0.0.1:1", None).unwrap();
        let error = client
            .list_events(&EventFilter::default(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot reach the admin API at http://127.0.0.1:1: "),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }
}
