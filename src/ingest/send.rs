//! `tenant-gateway send`: post one CloudEvent the way an upstream system would (binary or
//! structured mode, percent-encoded headers), for the quick start and for development.

use std::path::PathBuf;

use crate::cloudevents::{encode_binary, encode_structured, CloudEvent, Data, ExtensionValue};
use crate::secret_file::{read_secret_file, SecretFileError};

/// HTTP content mode of the posted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// Attributes in `ce-*` headers, the data as the body.
    Binary,
    /// The whole event as an `application/cloudevents+json` body.
    Structured,
}

/// What `send` posts and where; `cli` builds it from the flags.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// CloudEvent `type`.
    pub ty: String,
    /// The `tenant` extension attribute, if any.
    pub tenant: Option<String>,
    /// Event data as JSON text (validated before sending).
    pub data: Option<String>,
    /// Binary or structured mode.
    pub mode: SendMode,
    /// The gateway's ingest endpoint.
    pub url: String,
    /// CloudEvent `source`.
    pub source: String,
    /// CloudEvent `id`; `None` sends a new UUIDv7.
    pub id: Option<String>,
    /// CloudEvent `subject`.
    pub subject: Option<String>,
    /// File holding the bearer token to send.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("--data is not valid JSON: {0}")]
    Data(serde_json::Error),
    #[error("token file {0}")]
    Token(SecretFileError),
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{status}: {detail}")]
    Rejected { status: u16, detail: String },
}

/// Build the event `send` posts from its settings.
pub fn event_from_settings(settings: &SendSettings) -> Result<CloudEvent, SendError> {
    let id = settings
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut event = CloudEvent::new(id, settings.source.clone(), settings.ty.clone());
    event.time = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    event.subject = settings.subject.clone();
    if let Some(tenant) = &settings.tenant {
        event
            .extensions
            .insert("tenant".into(), ExtensionValue::String(tenant.clone()));
    }
    if let Some(data) = &settings.data {
        event.data = Some(Data::Json(
            serde_json::from_str(data).map_err(SendError::Data)?,
        ));
        event.datacontenttype = Some("application/json".into());
    }
    Ok(event)
}

/// Post the event; on success return the gateway's JSON answer, otherwise the problem detail.
pub async fn run(settings: SendSettings) -> Result<serde_json::Value, SendError> {
    let event = event_from_settings(&settings)?;
    let client = reqwest::Client::new();
    let mut request = client.post(&settings.url);
    if let Some(path) = &settings.token_file {
        let token = read_secret_file(path).map_err(SendError::Token)?;
        request = request.bearer_auth(token);
    }
    request = match settings.mode {
        SendMode::Binary => {
            let (headers, body) = encode_binary(&event);
            headers
                .into_iter()
                .fold(request, |r, (name, value)| r.header(name, value))
                .body(body)
        }
        SendMode::Structured => {
            let (content_type, body) = encode_structured(&event);
            request.header("content-type", content_type).body(body)
        }
    };
    let transport = |source| SendError::Transport {
        url: settings.url.clone(),
        source,
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let text = response.text().await.map_err(transport)?;
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if status.is_success() {
        Ok(body)
    } else {
        let detail = body
            .get("detail")
            .and_then(|d| d.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        Err(SendError::Rejected {
            status: status.as_u16(),
            detail,
        })
    }
}
