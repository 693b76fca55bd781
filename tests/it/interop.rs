//! Interop with the official Python CloudEvents SDK (pinned in tests/interop/requirements.txt):
//! it posts in binary and structured mode, 1.0 and 0.3, including a percent-encoded non-ASCII
//! subject, and every stored event's attributes and data equal what the SDK sent.

use std::process::Command;

use serde_json::Value;

use crate::support::{skip_or_fail, TestApp};

fn python_with_sdk() -> bool {
    Command::new("python3")
        .args(["-c", "import cloudevents"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_events_are_stored_as_sent() {
    if !python_with_sdk()
        && skip_or_fail(
            "python3 with the cloudevents package (pip install -r tests/interop/requirements.txt)",
        )
    {
        return;
    }
    let app = TestApp::spawn().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/post_with_sdk.py"
    );
    let url = app.url("/events");
    let output =
        tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(url).output())
            .await
            .unwrap()
            .expect("run python3");
    assert!(
        output.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    let mut seen = std::collections::BTreeSet::new();
    for case in &cases {
        let name = case["case"].as_str().unwrap_or("?");
        assert_eq!(case["status"], 202, "{name}: {}", case["response"]);
        seen.insert((
            case["mode"].as_str().unwrap().to_owned(),
            case["specversion"].as_str().unwrap().to_owned(),
        ));
        let sent = case["sent"].as_object().expect("sent attributes");
        let stored = app
            .journal
            .find_by_origin(
                sent["source"].as_str().unwrap(),
                sent["id"].as_str().unwrap(),
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: not stored"));
        for (attr, value) in sent {
            let stored_value = match &stored.document[attr] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("{name}: attribute {attr} was not stored"),
                other => other.to_string(),
            };
            assert_eq!(
                Some(stored_value.as_str()),
                value.as_str(),
                "{name}: attribute {attr}"
            );
        }
        assert_eq!(stored.document["data"], case["data"], "{name}: data");
        assert_eq!(
            case["response"]["events"][0]["eventId"],
            stored.event_id.to_string()
        );
    }
    for mode in ["binary", "structured"] {
        for version in ["1.0", "0.3"] {
            assert!(
                seen.contains(&(mode.to_owned(), version.to_owned())),
                "no {mode} {version} case"
            );
        }
    }
    let non_ascii = cases
        .iter()
        .find(|c| c["sent"]["subject"].as_str().is_some_and(|s| !s.is_ascii()))
        .expect("a non-ASCII subject case");
    let header = non_ascii["headers"]["ce-subject"]
        .as_str()
        .expect("ce-subject header");
    assert!(
        header.is_ascii() && header.contains('%'),
        "sent percent-encoded: {header}"
    );
    app.stop().await;
}
