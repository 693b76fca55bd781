//! RFC 9457 problem details: the one place HTTP errors become `application/problem+json`.
//! Handlers keep their own error enums and describe each variant as a [`Problem`].

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde::Serialize;

use crate::cloudevents::{Violation, Violations};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem response. `type` is a stable URN per kind of problem (listed in docs/api.md), so
/// clients can branch on it without parsing `detail`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The last part of `type` (`invalid-cloudevent`): a fixed set, so it can be a metrics label.
    #[serde(skip)]
    pub slug: &'static str,
    pub title: &'static str,
    #[serde(serialize_with = "serialize_status")]
    pub status: StatusCode,
    pub detail: String,
    /// One entry per bad attribute, with the batch index where it applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
    /// Violations found beyond the listed ones (the list is bounded); omitted when 0.
    #[serde(rename = "moreErrors", skip_serializing_if = "is_zero")]
    pub more_errors: usize,
    /// The config key of the limit a request exceeded, so a client can tell which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    /// Seconds for `Retry-After` (429/503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer` (401).
    #[serde(skip)]
    pub bearer_challenge: bool,
    /// Closes the connection after the answer (`Connection: close`): the request body was not
    /// read to its end, so the connection cannot carry another request.
    #[serde(skip)]
    pub close_connection: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn serialize_status<S: serde::Serializer>(s: &StatusCode, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_u16(s.as_u16())
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            problem_type: format!("urn:tenant-gateway:problem:{slug}"),
            slug,
            title,
            status,
            detail: detail.into(),
            errors: Vec::new(),
            more_errors: 0,
            limit: None,
            retry_after: None,
            bearer_challenge: false,
            close_connection: false,
        }
    }

    pub fn with_errors(mut self, errors: Vec<Violation>) -> Self {
        self.errors = errors;
        self
    }

    /// The bounded list of a request's violations, with the count of those not listed.
    pub fn with_violations(mut self, violations: Violations) -> Self {
        self.errors = violations.listed;
        self.more_errors = violations.more;
        self
    }

    pub fn with_limit(mut self, limit: &'static str) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn close_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.content_type(PROBLEM_JSON);
        if let Some(s) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if self.close_connection {
            builder.force_close();
        }
        if self.bearer_challenge {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"tenant-gateway\""));
        }
        builder.json(self)
    }

    /// For unexpected failures: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the gateway hit an unexpected error; it has been logged",
        )
    }
}
