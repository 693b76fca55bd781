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
pub use http::{
    decode_request, decode_request_with, encode_binary, encode_structured, ContentMode,
};

/// At most this many violations are listed in a refusal; the rest are only counted, so a hostile
/// body costs an answer proportional to what it has to say, not to its size.
pub const MAX_LISTED_VIOLATIONS: usize = 100;
/// Values echoed back in problems and logs are cut to this many characters.
pub const MAX_ECHO_CHARS: usize = 200;

/// `value` cut to [`MAX_ECHO_CHARS`] characters (marked with `…`), for messages and logs that
/// quote what a client sent.
pub fn echo(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => std::borrow::Cow::Borrowed(value),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &value[..cut], value.len()))
        }
    }
}

/// Limits the decoder enforces before it does per-attribute work, each named after its config
/// key so a refusal can say which one was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Events in one batch (`max-batch-events`): bounds the work and the journal transaction of
    /// one request. Counted while parsing, so an oversized batch is never materialized.
    pub max_batch_events: usize,
    /// Extension attributes of one event (`max-extensions`).
    pub max_extensions: usize,
    /// Bytes of `id`, `source`, `type`, `subject` and each string extension value
    /// (`max-attribute-length`).
    pub max_attribute_length: usize,
}

impl DecodeLimits {
    pub const DEFAULT_MAX_BATCH_EVENTS: usize = 1000;
    pub const DEFAULT_MAX_EXTENSIONS: usize = 50;
    pub const DEFAULT_MAX_ATTRIBUTE_LENGTH: usize = 1024;
    /// No limits: for documents the gateway stored itself or a developer checks locally.
    pub const UNLIMITED: DecodeLimits = DecodeLimits {
        max_batch_events: usize::MAX,
        max_extensions: usize::MAX,
        max_attribute_length: usize::MAX,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_batch_events: Self::DEFAULT_MAX_BATCH_EVENTS,
            max_extensions: Self::DEFAULT_MAX_EXTENSIONS,
            max_attribute_length: Self::DEFAULT_MAX_ATTRIBUTE_LENGTH,
        }
    }
}

/// One reason an incoming message is not a valid CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Position in a batch; `None` for binary and structured mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The attribute (or `data`) the problem is about, when there is one (cut to
    /// [`MAX_ECHO_CHARS`]: the name is client input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// What is wrong, for a human reading the response.
    pub message: String,
}

impl Violation {
    pub fn new(attribute: Option<&str>, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // Messages quote values through `echo`; this cut is the backstop for any that do not.
        if let Some((cut, _)) = message.char_indices().nth(2 * MAX_ECHO_CHARS) {
            message.truncate(cut);
            message.push('…');
        }
        Violation {
            index: None,
            attribute: attribute.map(|a| echo(a).into_owned()),
            message,
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

/// Violations found in one request: the first [`MAX_LISTED_VIOLATIONS`] kept, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    /// What the refusal lists, in the order found.
    pub listed: Vec<Violation>,
    /// How many more were found and not kept.
    pub more: usize,
}

impl Violations {
    pub fn push(&mut self, violation: Violation) {
        if self.listed.len() < MAX_LISTED_VIOLATIONS {
            self.listed.push(violation);
        } else {
            self.more += 1;
        }
    }

    pub fn one(violation: Violation) -> Self {
        Violations {
            listed: vec![violation],
            more: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    pub fn total(&self) -> usize {
        self.listed.len() + self.more
    }

    /// One line for `detail` and logs: the first violation, and how many others there are.
    pub fn summary(&self) -> String {
        let Some(first) = self.listed.first() else {
            return "no violations".into();
        };
        match self.total() - 1 {
            0 => first.to_string(),
            others => format!("{first} (and {others} more)"),
        }
    }
}

impl Extend<Violation> for Violations {
    fn extend<I: IntoIterator<Item = Violation>>(&mut self, iter: I) {
        for v in iter {
            self.push(v);
        }
    }
}

impl FromIterator<Violation> for Violations {
    fn from_iter<I: IntoIterator<Item = Violation>>(iter: I) -> Self {
        let mut all = Violations::default();
        all.extend(iter);
        all
    }
}

/// Why a request could not be turned into CloudEvents.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// A CloudEvents structured or batch format other than JSON (HTTP 415).
    #[error("unsupported CloudEvents format {media_type:?}: only JSON is supported")]
    UnsupportedFormat { media_type: String },
    /// Not a valid CloudEvent (HTTP 400); the first violations are listed, the rest counted.
    #[error("invalid CloudEvent: {}", .violations.summary())]
    Invalid { violations: Violations },
    /// A [`DecodeLimits`] limit was exceeded (HTTP 413); decoding stopped there.
    #[error("{detail}")]
    LimitExceeded {
        /// The config key of the limit.
        limit: &'static str,
        /// Its configured value.
        max: usize,
        /// What exceeded it, naming the limit.
        detail: String,
    },
}

impl DecodeError {
    pub fn invalid(v: Violation) -> Self {
        DecodeError::Invalid {
            violations: Violations::one(v),
        }
    }
}

impl From<Violations> for DecodeError {
    fn from(violations: Violations) -> Self {
        DecodeError::Invalid { violations }
    }
}
