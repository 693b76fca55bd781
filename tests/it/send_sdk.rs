//! `tenant-gateway send` posts with the CloudEvents Rust SDK: in both content modes the gateway
//! stores the attributes it sent, a subject needing percent-encoding included.

use tenant_gateway::ingest::send::{run, SendMode, SendSettings};

use crate::support::TestApp;

/// Space, `%`, `"` and non-ASCII: all must be percent-encoded in a binary-mode header
/// (CloudEvents HTTP binding 3.1.3.2) and decoded back by the receiver.
const SUBJECT: &str = "caf\u{e9} \u{2615} 100% \"done\"";

#[tokio::test]
async fn send_with_the_sdk_is_stored_as_sent_in_both_modes() {
    let app = TestApp::spawn().await;
    for (mode, id) in [
        (SendMode::Binary, "sdk-binary"),
        (SendMode::Structured, "sdk-structured"),
    ] {
        let settings = SendSettings {
            ty: "com.acme.tenant.lifecycle.upsert".into(),
            tenant: Some("acme".into()),
            data: Some(r#"{"plan":"gold","seats":3}"#.into()),
            mode,
            url: app.url("/events"),
            source: "//crm.acme.com/sdk-rust".into(),
            id: Some(id.into()),
            subject: Some(SUBJECT.into()),
            token_file: None,
        };
        let answer = run(settings)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(answer["accepted"], 1, "{mode:?}: {answer}");
        let stored = app
            .journal
            .find_by_origin("//crm.acme.com/sdk-rust", id)
            .await
            .expect("journal read")
            .unwrap_or_else(|| panic!("{mode:?}: not stored"));
        let document = &stored.document;
        assert_eq!(document["specversion"], "1.0", "{mode:?}");
        assert_eq!(document["id"], id);
        assert_eq!(document["type"], "com.acme.tenant.lifecycle.upsert");
        assert_eq!(document["subject"], SUBJECT, "{mode:?}");
        assert_eq!(document["tenant"], "acme", "{mode:?}");
        assert_eq!(document["datacontenttype"], "application/json", "{mode:?}");
        assert_eq!(
            document["data"],
            serde_json::json!({"plan": "gold", "seats": 3}),
            "{mode:?}"
        );
        let time = document["time"].as_str().expect("a time attribute");
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{mode:?}: {time}"
        );
    }
    app.stop().await;
}
