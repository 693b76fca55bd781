//! Where a rule finds a value in an event: an attribute, an extension or a JSON pointer into
//! the data ([`ValueSource`]), and how the value found becomes a string.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::super::scalar_string;
use crate::cloudevents::event::is_valid_attribute_name;
use crate::cloudevents::{CloudEvent, Data, ExtensionValue};

/// Where a value comes from in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// `extension:NAME`: an extension attribute.
    Extension(String),
    /// `subject`.
    Subject,
    /// `data:POINTER`: an RFC 6901 JSON pointer into JSON data.
    Data(String),
    /// `type`.
    Type,
    /// `source`.
    Source,
    /// `id`.
    Id,
}

/// Context attributes that are not extensions: `extension:subject` could never be found, so it
/// is refused at load with a hint.
const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "schemaurl",
    "data",
];

impl FromStr for ValueSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected extension:NAME, subject, data:/POINTER, type, source or id";
        if let Some(name) = s.strip_prefix("extension:") {
            if CONTEXT_ATTRIBUTES.contains(&name) {
                return Err(format!(
                    "{s:?}: {name} is a context attribute, not an extension (write {name:?})"
                ));
            }
            if !is_valid_attribute_name(name) {
                return Err(format!(
                    "{s:?}: extension names are lower-case ASCII letters and digits"
                ));
            }
            return Ok(ValueSource::Extension(name.to_owned()));
        }
        if let Some(pointer) = s.strip_prefix("data:") {
            check_pointer(pointer).map_err(|reason| format!("{s:?}: {reason}"))?;
            return Ok(ValueSource::Data(pointer.to_owned()));
        }
        match s {
            "subject" => Ok(ValueSource::Subject),
            "type" => Ok(ValueSource::Type),
            "source" => Ok(ValueSource::Source),
            "id" => Ok(ValueSource::Id),
            _ => Err(format!("invalid value source {s:?}: {expected}")),
        }
    }
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSource::Extension(name) => write!(f, "extension:{name}"),
            ValueSource::Subject => f.write_str("subject"),
            ValueSource::Data(pointer) => write!(f, "data:{pointer}"),
            ValueSource::Type => f.write_str("type"),
            ValueSource::Source => f.write_str("source"),
            ValueSource::Id => f.write_str("id"),
        }
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` only escapes `~0`
/// and `~1`. serde_json would read `~2` literally, which hides a typo.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err("a JSON pointer must be empty or start with '/'".into());
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(
                "in a JSON pointer '~' must be followed by 0 or 1 (~0 is '~', ~1 is '/')".into(),
            );
        }
    }
    Ok(())
}

/// A value found in an event, before it is turned into a string.
enum Found<'a> {
    /// From an attribute: already a string.
    Text(Cow<'a, str>),
    /// From JSON data: any JSON value.
    Json(&'a Value),
}

impl ValueSource {
    /// The attribute an error about this source points at.
    pub(super) fn attribute(&self) -> &str {
        match self {
            ValueSource::Extension(name) => name,
            ValueSource::Subject => "subject",
            ValueSource::Data(_) => "data",
            ValueSource::Type => "type",
            ValueSource::Source => "source",
            ValueSource::Id => "id",
        }
    }

    fn find<'a>(&self, event: &'a CloudEvent) -> Result<Found<'a>, String> {
        let text = |s: &'a str| Ok(Found::Text(Cow::Borrowed(s)));
        match self {
            ValueSource::Extension(name) => match event.extension(name) {
                Some(ExtensionValue::String(s)) => text(s),
                Some(ExtensionValue::Boolean(b)) => Ok(Found::Text(b.to_string().into())),
                Some(ExtensionValue::Integer(i)) => Ok(Found::Text(i.to_string().into())),
                None => Err(format!("{self}: the event has no {name} extension")),
            },
            ValueSource::Subject => match &event.subject {
                Some(s) => text(s),
                None => Err("subject: the event has no subject".into()),
            },
            ValueSource::Type => text(&event.ty),
            ValueSource::Source => text(&event.source),
            ValueSource::Id => text(&event.id),
            ValueSource::Data(pointer) => match &event.data {
                Some(Data::Json(data)) => data
                    .pointer(pointer)
                    .map(Found::Json)
                    .ok_or_else(|| format!("{self}: not found in the event data")),
                Some(Data::Text(_)) => Err(format!("{self}: the event data is text, not JSON")),
                Some(Data::Binary(_)) => Err(format!("{self}: the event data is binary, not JSON")),
                None => Err(format!("{self}: the event has no data")),
            },
        }
    }

    /// For the tenant, the action and the URL: a string, number or boolean.
    pub(super) fn scalar(&self, event: &CloudEvent) -> Result<String, String> {
        match self.find(event)? {
            Found::Text(s) => Ok(s.into_owned()),
            Found::Json(v) => scalar_string(v).ok_or_else(|| {
                format!(
                    "{self}: is {}, expected a string, number or boolean",
                    json_kind(v)
                )
            }),
        }
    }

    /// For parameters: like [`Self::scalar`], but objects and arrays pass as compact JSON text
    /// so a team can receive structured input; null is still an error, like a missing value.
    pub(super) fn parameter(&self, event: &CloudEvent) -> Result<String, String> {
        match self.find(event)? {
            Found::Text(s) => Ok(s.into_owned()),
            Found::Json(Value::Null) => Err(format!(
                "{self}: is null, expected a string, number, boolean, object or array"
            )),
            Found::Json(v @ (Value::Object(_) | Value::Array(_))) => Ok(v.to_string()),
            Found::Json(v) => Ok(scalar_string(v).unwrap_or_default()),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "a JSON object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_sources_parse() {
        for (text, expected) in [
            ("extension:region", ValueSource::Extension("region".into())),
            ("subject", ValueSource::Subject),
            ("data:/a/b", ValueSource::Data("/a/b".into())),
            ("data:", ValueSource::Data(String::new())),
            ("data:/a~1b~0", ValueSource::Data("/a~1b~0".into())),
            ("type", ValueSource::Type),
            ("source", ValueSource::Source),
            ("id", ValueSource::Id),
        ] {
            let parsed: ValueSource = text.parse().unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "data:a/b",
            "data:/a~2",
            "data:/a~",
            "extension:Region",
            "extension:",
            "extension:subject",
            "time",
            "",
            "/a/b",
        ] {
            assert!(bad.parse::<ValueSource>().is_err(), "{bad} accepted");
        }
    }
}
