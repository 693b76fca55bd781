//! The strict CloudEvents model and HTTP protocol binding (receive side, plus the small encoder
//! `send` and the tests use).
//!
//! Layout:
//! - [`event`]: the [`CloudEvent`] model, its canonical structured-JSON form and content hash.
//! - [`format`](mod@format): the JSON event format (structured and batch members -> [`CloudEvent`]).
//! - [`http`]: the HTTP binding v1.0.2: content-mode detection, binary-mode headers with
//!   percent-decoding (section 3.1.3.2), and the encoder.
//!
//! Why our own: `cloudevents-sdk` 0.9 has no batch receive in actix, does not percent-decode
//! `ce-*` headers and accepts events the spec forbids. Every rule here is a MUST of the spec or of
//! `docs/api.md` ("Validation"), and every rejection names the attribute and the reason.

pub mod event;
pub mod format;
pub mod http;

pub use event::{CloudEvent, Data, ExtensionValue, SpecVersion};
pub use http::{decode_request, encode_binary, encode_structured, ContentMode};

/// One reason an incoming message is not a valid CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Position in a batch; `None` for binary and structured mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The attribute (or `data`) the problem is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// What is wrong, for a human reading the response.
    pub message: String,
}

impl Violation {
    pub fn new(attribute: Option<&str>, message: impl Into<String>) -> Self {
        Violation {
            index: None,
            attribute: attribute.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn attr(attribute: &str, message: impl Into<String>) -> Self {
        Self::new(Some(attribute), message)
    }

    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.index {
            write!(f, "[{i}] ")?;
        }
        if let Some(a) = &self.attribute {
            write!(f, "{a}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a request could not be turned into CloudEvents.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// A CloudEvents structured or batch format other than JSON (HTTP 415).
    #[error("unsupported CloudEvents format {media_type:?}: only JSON is supported")]
    UnsupportedFormat { media_type: String },
    /// Not a valid CloudEvent (HTTP 400); every problem found is listed.
    #[error("invalid CloudEvent: {}", .violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { violations: Vec<Violation> },
}

impl DecodeError {
    pub fn invalid(v: Violation) -> Self {
        DecodeError::Invalid {
            violations: vec![v],
        }
    }
}
