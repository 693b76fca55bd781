//! `tenant-gateway send`: post one CloudEvent the way an upstream system would (binary or
//! structured mode), for the quick start and for development.
//!
//! The event is built and written into the request by the CloudEvents Rust SDK
//! (`cloudevents-sdk`, its reqwest binding), so the gateway's strict receive binding is
//! exercised by a third SDK besides the Python and JavaScript ones. One gap is filled here: the
//! SDK's binary serializer (`binding/reqwest/client_request.rs`, `RequestSerializer::
//! set_attribute`) writes attribute values into `ce-*` headers as they are, while the HTTP
//! binding (section 3.1.3.2) requires percent-encoding space, `"`, `%` and everything outside
//! printable ASCII; [`PercentEncodedHeaders`] encodes them before the SDK writes the header.

use std::path::PathBuf;

use cloudevents_sdk::binding::reqwest::RequestSerializer;
use cloudevents_sdk::event::SpecVersion;
use cloudevents_sdk::message::{
    BinaryDeserializer, BinarySerializer, MessageAttributeValue, StructuredDeserializer,
};
use cloudevents_sdk::{Event, EventBuilder, EventBuilderV10};
use reqwest::RequestBuilder;

use crate::cloudevents::http::encode_header_value;
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
    /// The SDK refused the event or could not write it into the request.
    #[error("cannot build the CloudEvent: {0}")]
    Event(String),
    #[error("token file {0}")]
    Token(SecretFileError),
    #[error("cannot reach {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{status}: {detail}")]
    Rejected { status: u16, detail: String },
}

/// Build the event `send` posts from its settings, with the SDK's builder.
pub fn event_from_settings(settings: &SendSettings) -> Result<Event, SendError> {
    let id = settings
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut builder = EventBuilderV10::new()
        .id(id)
        .source(settings.source.clone())
        .ty(settings.ty.clone())
        .time(chrono::Utc::now());
    if let Some(subject) = &settings.subject {
        builder = builder.subject(subject.clone());
    }
    if let Some(tenant) = &settings.tenant {
        builder = builder.extension("tenant", tenant.clone());
    }
    if let Some(data) = &settings.data {
        let data: serde_json::Value = serde_json::from_str(data).map_err(SendError::Data)?;
        builder = builder.data("application/json", data);
    }
    builder.build().map_err(|e| SendError::Event(e.to_string()))
}

/// The SDK's binary-mode request serializer with attribute values percent-encoded as the HTTP
/// binding requires (the SDK writes them raw). `datacontenttype` becomes `Content-Type`, an
/// ordinary HTTP header, and stays as it is.
struct PercentEncodedHeaders(RequestSerializer);

impl PercentEncodedHeaders {
    fn encoded(name: &str, value: MessageAttributeValue) -> MessageAttributeValue {
        if name == "datacontenttype" {
            value
        } else {
            MessageAttributeValue::String(encode_header_value(&value.to_string()))
        }
    }
}

impl BinarySerializer<RequestBuilder> for PercentEncodedHeaders {
    fn set_spec_version(self, spec_version: SpecVersion) -> cloudevents_sdk::message::Result<Self> {
        self.0.set_spec_version(spec_version).map(Self)
    }

    fn set_attribute(
        self,
        name: &str,
        value: MessageAttributeValue,
    ) -> cloudevents_sdk::message::Result<Self> {
        self.0
            .set_attribute(name, Self::encoded(name, value))
            .map(Self)
    }

    fn set_extension(
        self,
        name: &str,
        value: MessageAttributeValue,
    ) -> cloudevents_sdk::message::Result<Self> {
        self.0
            .set_extension(name, Self::encoded(name, value))
            .map(Self)
    }

    fn end_with_data(self, bytes: Vec<u8>) -> cloudevents_sdk::message::Result<RequestBuilder> {
        self.0.end_with_data(bytes)
    }

    fn end(self) -> cloudevents_sdk::message::Result<RequestBuilder> {
        self.0.end()
    }
}

/// `event` written into `request` by the SDK in `mode`.
fn with_event(
    request: RequestBuilder,
    event: Event,
    mode: SendMode,
) -> Result<RequestBuilder, SendError> {
    let written = match mode {
        SendMode::Binary => BinaryDeserializer::deserialize_binary(
            event,
            PercentEncodedHeaders(RequestSerializer::new(request)),
        ),
        SendMode::Structured => {
            StructuredDeserializer::deserialize_structured(event, RequestSerializer::new(request))
        }
    };
    written.map_err(|e| SendError::Event(e.to_string()))
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
    let request = with_event(request, event, settings.mode)?;
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
