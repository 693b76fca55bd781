//! The journal's stored vocabularies: delivery states, attempt outcomes and replay job states.
//!
//! Each enum has one spelling table, used by the stored rows (`as_str`, [`FromStr`]) and by the
//! admin API's JSON (serde), so the wire format of `docs/openapi.json` and the stored text cannot
//! drift apart. Text a row holds that no variant spells is a decode error of the row
//! ([`UnknownValue`]), never a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Text that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {expected}")]
pub struct UnknownValue {
    /// The text found.
    pub value: String,
    /// The spellings accepted, comma-separated, for the message.
    pub expected: &'static str,
}

/// Reads a spelling through [`FromStr`], so JSON and rows refuse unknown words with the same
/// message (serde's derived enums say only "expected value" for a number).
struct SpellingVisitor<T>(std::marker::PhantomData<T>);

impl<T: FromStr<Err = UnknownValue>> serde::de::Visitor<'_> for SpellingVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The accepted words are in the error of any string; a non-string only needs the kind.
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<T, E> {
        value.parse().map_err(E::custom)
    }
}

/// Implements `as_str`, `ALL`, [`FromStr`], [`fmt::Display`] and serde from one spelling table,
/// so the stored and the JSON spelling cannot drift apart.
macro_rules! spelled {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order (the order listings show counts in).
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The stored and wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(value: &str) -> Result<Self, UnknownValue> {
                Self::ALL
                    .into_iter()
                    .find(|known| known.as_str() == value)
                    .ok_or_else(|| UnknownValue {
                        value: value.to_owned(),
                        expected: concat!($($text, ", "),+).trim_end_matches(", "),
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(SpellingVisitor::<$name>(std::marker::PhantomData))
            }
        }
    };
}

/// Delivery state of an event, which is that of its latest emission; also the state of a stored
/// emission (`StoredEmission::status`). One type serves both because the journal defines an
/// event's state as its latest emission's and stores the same four words in both tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStatus {
    /// Not delivered yet.
    Pending,
    /// The sink took it.
    Delivered,
    /// Failed for good; its tenant is parked.
    Dead,
    /// An operator skipped it.
    Skipped,
}

spelled!(EventStatus {
    Pending => "pending",
    Delivered => "delivered",
    Dead => "dead",
    Skipped => "skipped",
});

impl EventStatus {
    /// Parses the stored spelling (`None` for text no status spells).
    pub fn parse(value: &str) -> Option<Self> {
        value.parse().ok()
    }
}

/// Where an emission stands after a delivery attempt: the states the dispatcher can reach.
///
/// Narrower than [`EventStatus`] on purpose: only an operator skips, never an attempt, so the
/// dispatcher's exhaustive matches have no `Skipped` arm to get wrong. Stored emissions, which
/// can be skipped, read back as [`EventStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmissionStatus {
    /// Not delivered yet; the dispatcher will try again.
    Pending,
    /// The sink took it.
    Delivered,
    /// Failed permanently or ran out of retries; its tenant is parked.
    Dead,
}

impl EmissionStatus {
    /// The stored spelling (that of the same [`EventStatus`]).
    pub fn as_str(self) -> &'static str {
        EventStatus::from(self).as_str()
    }
}

impl From<EmissionStatus> for EventStatus {
    fn from(status: EmissionStatus) -> Self {
        match status {
            EmissionStatus::Pending => EventStatus::Pending,
            EmissionStatus::Delivered => EventStatus::Delivered,
            EmissionStatus::Dead => EventStatus::Dead,
        }
    }
}

/// How one delivery attempt ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The sink took the emission.
    Delivered,
    /// A failure worth retrying (timeout, connection error, 429, 5xx).
    Retryable,
    /// A failure no retry can fix (another 4xx).
    Permanent,
}

spelled!(AttemptOutcome {
    Delivered => "delivered",
    Retryable => "retryable",
    Permanent => "permanent",
});

/// State of a bulk replay job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayJobStatus {
    /// Replaying its events, batch by batch.
    Running,
    /// Every selected event was replayed.
    Completed,
    /// An operator cancelled it.
    Cancelled,
    /// It stopped on an error (kept in the job's `error`).
    Failed,
}

spelled!(ReplayJobStatus {
    Running => "running",
    Completed => "completed",
    Cancelled => "cancelled",
    Failed => "failed",
});

impl ReplayJobStatus {
    /// Whether the job is over (completed, cancelled or failed).
    pub fn is_final(self) -> bool {
        self != ReplayJobStatus::Running
    }
}

/// A Workflow's phase in Argo's casing (argo-workflows `pkg/apis/workflow/v1alpha1/
/// workflow_types.go`, `WorkflowPhase`: `""` (unknown), `Pending`, `Running`, `Succeeded`,
/// `Failed`, `Error`). A Workflow without a status yet (phase `""`) counts as `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowPhase {
    /// Created, not started (or no status yet).
    Pending,
    /// Started, not finished.
    Running,
    /// Finished, every step succeeded.
    Succeeded,
    /// Finished, a step failed.
    Failed,
    /// Finished, the controller could not run it (invalid spec, a step's error).
    Error,
}

spelled!(WorkflowPhase {
    Pending => "Pending",
    Running => "Running",
    Succeeded => "Succeeded",
    Failed => "Failed",
    Error => "Error",
});

impl WorkflowPhase {
    /// Whether the Workflow is over (`Succeeded`, `Failed` or `Error`: the controller's
    /// `Completed()`, `workflow_types.go` `WorkflowPhase.Completed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Error)
    }

    /// What a tenant's lifecycle step came to, as the admin API and completion events say it.
    pub fn outcome(self) -> LifecycleOutcome {
        match self {
            Self::Pending => LifecycleOutcome::Pending,
            Self::Running => LifecycleOutcome::Running,
            Self::Succeeded => LifecycleOutcome::Succeeded,
            Self::Failed | Self::Error => LifecycleOutcome::Failed,
        }
    }
}

/// What a tenant's newest delivered emission came to: its Workflow's phase, coarsened
/// (`Error` counts as failed; no Workflow seen yet counts as pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleOutcome {
    /// Delivered; no Workflow seen yet, or it is `Pending`.
    Pending,
    /// Its Workflow is `Running`.
    Running,
    /// Its Workflow `Succeeded`.
    Succeeded,
    /// Its Workflow `Failed` or ended in `Error`.
    Failed,
}

spelled!(LifecycleOutcome {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
});

/// Where a tenant's environment stands, from its last succeeded lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// No action succeeded yet.
    Unknown,
    /// After a succeeded `upsert` or `migrate-in`.
    Active,
    /// After a succeeded `migrate-out`.
    MigratedOut,
    /// After a succeeded `delete`.
    Deleted,
}

spelled!(Lifecycle {
    Unknown => "unknown",
    Active => "active",
    MigratedOut => "migrated-out",
    Deleted => "deleted",
});

impl Lifecycle {
    /// The lifecycle a succeeded `action` leads to; `None` for an action that changes none
    /// (`admin`, or any action the rules add that is not one of the four above).
    pub fn after(action: &str) -> Option<Lifecycle> {
        match action {
            "upsert" | "migrate-in" => Some(Lifecycle::Active),
            "migrate-out" => Some(Lifecycle::MigratedOut),
            "delete" => Some(Lifecycle::Deleted),
            _ => None,
        }
    }
}

/// Decodes a stored status or outcome for any backend: text this build does not spell makes the
/// row corrupt (`row` names it, e.g. its event id, for the log).
pub(in crate::journal) fn decode<T: FromStr<Err = UnknownValue>>(
    value: &str,
    column: &str,
    row: &str,
) -> Result<T, super::JournalError> {
    value.parse().map_err(|error| super::JournalError::Corrupt {
        event_id: row.to_owned(),
        reason: format!("{column}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value's JSON is its stored spelling, and the spelling parses back to it.
    fn assert_one_spelling<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + Serialize + FromStr<Err = UnknownValue> + fmt::Display,
    {
        for &value in all {
            let text = value.to_string();
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::json!(text)
            );
            assert_eq!(text.parse::<T>(), Ok(value), "{text}");
        }
    }

    #[test]
    fn json_and_stored_spellings_are_the_same_words() {
        assert_one_spelling(&EventStatus::ALL);
        assert_one_spelling(&AttemptOutcome::ALL);
        assert_one_spelling(&ReplayJobStatus::ALL);
        // The spellings the migrations' rows and docs/openapi.json use.
        let words = |all: &[&str]| all.join(" ");
        assert_eq!(
            words(&EventStatus::ALL.map(EventStatus::as_str)),
            "pending delivered dead skipped"
        );
        assert_eq!(
            words(&AttemptOutcome::ALL.map(AttemptOutcome::as_str)),
            "delivered retryable permanent"
        );
        assert_eq!(
            words(&ReplayJobStatus::ALL.map(ReplayJobStatus::as_str)),
            "running completed cancelled failed"
        );
    }

    #[test]
    fn unknown_text_is_an_error_naming_the_accepted_words() {
        let error = "lost".parse::<EventStatus>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"lost\" is not one of pending, delivered, dead, skipped"
        );
        assert!("Pending".parse::<EventStatus>().is_err(), "case matters");
        assert!("paused".parse::<ReplayJobStatus>().is_err());
        assert!("timeout".parse::<AttemptOutcome>().is_err());
        let json = serde_json::from_str::<EventStatus>("\"lost\"").unwrap_err();
        assert!(json.to_string().starts_with(&error.to_string()), "{json}");
        let json = serde_json::from_str::<EventStatus>("3").unwrap_err();
        assert!(json.to_string().contains("expected a string"), "{json}");
    }

    #[test]
    fn a_row_with_an_unknown_status_is_corrupt() {
        let error = decode::<EventStatus>("paused", "status", "0190").unwrap_err();
        assert!(
            matches!(&error, super::super::JournalError::Corrupt { event_id, reason }
                if event_id == "0190" && reason.contains("\"paused\"")),
            "{error:?}"
        );
        assert_eq!(
            decode("dead", "status", "0190").ok(),
            Some(EventStatus::Dead)
        );
    }

    #[test]
    fn an_emission_status_is_stored_as_the_same_event_status() {
        for (emission, event) in [
            (EmissionStatus::Pending, EventStatus::Pending),
            (EmissionStatus::Delivered, EventStatus::Delivered),
            (EmissionStatus::Dead, EventStatus::Dead),
        ] {
            assert_eq!(EventStatus::from(emission), event);
            assert_eq!(emission.as_str(), event.as_str());
        }
    }
}
