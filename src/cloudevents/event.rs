//! The CloudEvent model: what a valid event is once decoded, whatever mode it arrived in.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The two spec versions the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecVersion {
    V03,
    V10,
}

impl SpecVersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1.0" => Some(SpecVersion::V10),
            "0.3" => Some(SpecVersion::V03),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V10 => "1.0",
            SpecVersion::V03 => "0.3",
        }
    }
}

/// An extension attribute value. The JSON format carries strings, booleans and integers; binary
/// mode headers carry strings only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionValue {
    String(String),
    Boolean(bool),
    /// CloudEvents `Integer` is a signed 32-bit value.
    Integer(i32),
}

impl ExtensionValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ExtensionValue::String(s) => Some(s),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            ExtensionValue::String(s) => Value::String(s.clone()),
            ExtensionValue::Boolean(b) => Value::Bool(*b),
            ExtensionValue::Integer(i) => Value::from(*i),
        }
    }
}

/// Event data, kept in the form that round-trips without loss.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// JSON data (JSON `datacontenttype`, or none in structured mode).
    Json(Value),
    /// Text data of a non-JSON media type.
    Text(String),
    /// Opaque bytes (`data_base64` in JSON; a non-text binary-mode body).
    Binary(Vec<u8>),
}

/// A CloudEvent that passed every rule of the spec. Constructed only by the decoders in
/// [`super::format`] and [`super::http`], or by code that builds events it then validates.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub specversion: SpecVersion,
    pub id: String,
    pub source: String,
    /// The `type` attribute.
    pub ty: String,
    pub datacontenttype: Option<String>,
    /// `dataschema` (1.0) or `schemaurl` (0.3).
    pub dataschema: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339, kept exactly as sent so the stored event equals the posted one.
    pub time: Option<String>,
    pub extensions: BTreeMap<String, ExtensionValue>,
    pub data: Option<Data>,
}

impl CloudEvent {
    /// A minimal 1.0 event; callers set the optional attributes they need.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        CloudEvent {
            specversion: SpecVersion::V10,
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        self.extensions.get(name)
    }

    /// The event in the JSON event format with members in sorted order: the form the journal
    /// stores and hashes (so the same event sent in binary or structured mode is the same
    /// record) and the sinks send. The `Serialize` impl writes the same bytes without the tree.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.members()
                .into_iter()
                .map(|(name, member)| (name.to_owned(), member.to_value()))
                .collect::<Map<_, _>>(),
        )
    }

    /// The members of the JSON event format by name (so in the sorted order both `to_json` and
    /// `Serialize` write), borrowed from the event.
    fn members(&self) -> BTreeMap<&str, Member<'_>> {
        let mut members = BTreeMap::new();
        members.insert("specversion", Member::Text(self.specversion.as_str()));
        members.insert("id", Member::Text(&self.id));
        members.insert("source", Member::Text(&self.source));
        members.insert("type", Member::Text(&self.ty));
        if let Some(v) = &self.datacontenttype {
            members.insert("datacontenttype", Member::Text(v));
        }
        if let Some(v) = &self.dataschema {
            let key = match self.specversion {
                SpecVersion::V10 => "dataschema",
                SpecVersion::V03 => "schemaurl",
            };
            members.insert(key, Member::Text(v));
        }
        if let Some(v) = &self.subject {
            members.insert("subject", Member::Text(v));
        }
        if let Some(v) = &self.time {
            members.insert("time", Member::Text(v));
        }
        for (k, v) in &self.extensions {
            members.insert(k, Member::Extension(v));
        }
        match &self.data {
            None => {}
            Some(Data::Json(v)) => {
                members.insert("data", Member::Json(v));
            }
            Some(Data::Text(s)) => {
                members.insert("data", Member::Text(s));
            }
            Some(Data::Binary(b)) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                match self.specversion {
                    SpecVersion::V10 => {
                        members.insert("data_base64", Member::Encoded(encoded));
                    }
                    SpecVersion::V03 => {
                        members.insert("datacontentencoding", Member::Text("base64"));
                        members.insert("data", Member::Encoded(encoded));
                    }
                }
            }
        }
        members
    }

    /// Hex SHA-256 of the canonical JSON: equal hashes mean the same content.
    pub fn content_hash(document: &str) -> String {
        hex::encode(Sha256::digest(document.as_bytes()))
    }
}

/// Writes the JSON event format (as [`CloudEvent::to_json`] builds it) straight to the
/// serializer, with no intermediate `Value` tree: the journal's document at ingest and every
/// emission's bytes are written this way.
impl serde::Serialize for CloudEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let members = self.members();
        let mut map = serializer.serialize_map(Some(members.len()))?;
        for (name, member) in &members {
            map.serialize_entry(name, member)?;
        }
        map.end()
    }
}

/// One member's value in the JSON event format, borrowed from the event where it can be.
enum Member<'a> {
    Text(&'a str),
    Extension(&'a ExtensionValue),
    Json(&'a Value),
    /// Base64 of binary data, made when the member is.
    Encoded(String),
}

impl Member<'_> {
    fn to_value(&self) -> Value {
        match self {
            Member::Text(s) => Value::String((*s).to_owned()),
            Member::Extension(v) => v.to_json(),
            Member::Json(v) => (*v).clone(),
            Member::Encoded(s) => Value::String(s.clone()),
        }
    }
}

impl serde::Serialize for Member<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Member::Text(s) => serializer.serialize_str(s),
            Member::Extension(ExtensionValue::String(s)) => serializer.serialize_str(s),
            Member::Extension(ExtensionValue::Boolean(b)) => serializer.serialize_bool(*b),
            Member::Extension(ExtensionValue::Integer(i)) => serializer.serialize_i32(*i),
            Member::Json(v) => v.serialize(serializer),
            Member::Encoded(s) => serializer.serialize_str(s),
        }
    }
}

/// Attribute names are lower-case ASCII letters and digits (a MUST of the spec).
pub fn is_valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Attribute string values must not hold control characters (U+0000-U+001F, U+007F-U+009F).
pub fn control_character(value: &str) -> Option<char> {
    value
        .chars()
        .find(|c| matches!(*c as u32, 0x00..=0x1F | 0x7F..=0x9F))
}

/// Whether a media type denotes JSON data (`application/json`, `text/json`, `*/*+json`).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = media_type_essence(content_type);
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// `type/subtype` of a Content-Type value, lower-cased, without parameters.
pub fn media_type_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_are_lowercase_alphanumeric() {
        assert!(is_valid_attribute_name("comexampleextension1"));
        assert!(is_valid_attribute_name("averyveryverylongattributename"));
        for bad in ["", "Tenant", "data_base64", "with-dash", "ümlaut"] {
            assert!(!is_valid_attribute_name(bad), "{bad} accepted");
        }
    }

    #[test]
    fn control_characters_are_found() {
        assert_eq!(control_character("ok value"), None);
        assert_eq!(control_character("tab\there"), Some('\t'));
        assert_eq!(control_character("c1\u{85}"), Some('\u{85}'));
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/Vnd.Acme+JSON"));
        assert!(!is_json_media_type("text/plain"));
    }

    #[test]
    fn canonical_json_is_the_same_for_binary_data_in_both_versions() {
        let mut e = CloudEvent::new("1", "/s", "t");
        e.data = Some(Data::Binary(vec![0, 1, 2]));
        assert_eq!(e.to_json()["data_base64"], "AAEC");
        e.specversion = SpecVersion::V03;
        let j = e.to_json();
        assert_eq!(j["data"], "AAEC");
        assert_eq!(j["datacontentencoding"], "base64");
    }

    /// The stored document (and so its hash, which dedup compares) must be byte for byte what
    /// `to_json` gave before events were written without the tree: an event stored by an older
    /// release and posted again is still a duplicate, not a conflict.
    #[test]
    fn serialized_event_is_byte_for_byte_its_json_tree() {
        let mut full = CloudEvent::new("id-\u{e9}\"<&>", "//s/x", "com.t");
        full.datacontenttype = Some("application/json".into());
        full.dataschema = Some("https://schema.example/v1".into());
        full.subject = Some("sub\nject".into());
        full.time = Some("2026-01-02T03:04:05.678+01:00".into());
        full.extensions
            .insert("tenant".into(), ExtensionValue::String("acme".into()));
        full.extensions
            .insert("aaflag".into(), ExtensionValue::Boolean(true));
        full.extensions
            .insert("zcount".into(), ExtensionValue::Integer(-7));
        full.data = Some(Data::Json(serde_json::json!({
            "b": [1, 2.5, -0.0, 1e300, null, true],
            "a": {"nested": "\u{1F600}\u{0}\t"},
            "big": 18446744073709551615u64,
        })));
        let mut cases = vec![full.clone(), CloudEvent::new("1", "/s", "t")];
        for data in [
            Data::Text("plain \"text\"".into()),
            Data::Binary(vec![0, 255, 10, 13]),
            Data::Json(Value::String("json string".into())),
        ] {
            for version in [SpecVersion::V10, SpecVersion::V03] {
                let mut e = full.clone();
                e.specversion = version;
                e.data = Some(data.clone());
                cases.push(e);
            }
        }
        for e in cases {
            let tree = e.to_json();
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                tree.to_string(),
                "{tree}"
            );
            assert_eq!(serde_json::to_value(&e).unwrap(), tree);
        }
    }

    #[test]
    fn content_hash_depends_on_content() {
        let a = CloudEvent::content_hash("{\"a\":1}");
        assert_eq!(a, CloudEvent::content_hash("{\"a\":1}"));
        assert_ne!(a, CloudEvent::content_hash("{\"a\":2}"));
        assert_eq!(a.len(), 64);
    }
}
