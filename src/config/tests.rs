//! The layering of flags, environment, TOML and defaults; every key's validation.

use super::*;

fn file(text: &str) -> FileConfig {
    toml::from_str(text).expect("valid toml")
}

#[test]
fn store_password_file_and_read_connections_come_from_flags_or_file() {
    let from_file = file(
        r#"
        store-password-file = "/run/secrets/pg/password"
        store-read-connections = 2
        "#,
    );
    let s = Settings::resolve(FlagsAndEnvironment::default(), from_file).unwrap();
    assert_eq!(
        s.journal.password_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/pg/password"))
    );
    assert_eq!(s.journal.read_connections, 2);
    let flags = FlagsAndEnvironment {
        store_password_file: Some("/flag/password".into()),
        store_read_connections: Some(6),
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, file("store-read-connections = 2")).unwrap();
    assert_eq!(
        s.journal.password_file.as_deref(),
        Some(std::path::Path::new("/flag/password"))
    );
    assert_eq!(s.journal.read_connections, 6, "the flag wins over the file");
}

#[test]
fn tls_needs_a_certificate_and_its_key() {
    let s = Settings::resolve(
        FlagsAndEnvironment::default(),
        file("tls-cert = \"/t/tls.crt\"\ntls-key = \"/t/tls.key\"\ntls-client-ca = \"/t/ca.crt\""),
    )
    .unwrap();
    let tls = s.tls.expect("TLS on");
    assert_eq!(tls.cert, Path::new("/t/tls.crt"));
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/t/ca.crt")));
    assert!(s.admin_tls.is_none());
    // A flag replaces the file's key.
    let flags = FlagsAndEnvironment {
        tls: TlsFlags {
            key: Some("/flag/tls.key".into()),
            ..TlsFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, file("tls-cert = \"/t/tls.crt\"")).unwrap();
    assert_eq!(s.tls.expect("TLS on").key, Path::new("/flag/tls.key"));
    for (text, key) in [
        ("tls-cert = \"/t/tls.crt\"", "tls-key"),
        ("admin-tls-key = \"/t/tls.key\"", "admin-tls-cert"),
        ("tls-client-ca = \"/t/ca.crt\"", "tls-client-ca"),
        ("tls-reload-interval = \"0s\"", "tls-reload-interval"),
    ] {
        match Settings::resolve(FlagsAndEnvironment::default(), file(text)) {
            Err(ConfigError::Invalid { key: refused, .. }) => {
                assert_eq!(refused, key, "{text}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn defaults_apply_without_flags_or_file() {
    let s = Settings::resolve(FlagsAndEnvironment::default(), FileConfig::default()).unwrap();
    assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(s.store, DEFAULT_STORE);
    assert_eq!(s.max_body, 1024 * 1024);
    assert_eq!(s.log_format, LogFormat::Human);
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let f = file(
        r#"
        listen = "0.0.0.0:9000"
        store = "sqlite://from-file.db"
        max-body = "2MiB"
        shutdown-grace = "250ms"
        "#,
    );
    let flags = FlagsAndEnvironment {
        listen: Some("127.0.0.1:7000".parse().unwrap()),
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, f).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(s.store, "sqlite://from-file.db");
    assert_eq!(s.max_body, 2 * 1024 * 1024);
    assert_eq!(s.shutdown_grace, Duration::from_millis(250));
}

#[test]
fn tokens_from_flags_and_tables() {
    let f = file(
        r#"
        [[tokens]]
        name = "billing"
        file = "/run/secrets/billing"
        sources = ["//billing.acme.com/*"]
        "#,
    );
    let flags = FlagsAndEnvironment {
        token_files: vec!["/run/secrets/crm.token".into()],
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, f).unwrap();
    let names: Vec<_> = s.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["crm", "billing"]);
    assert_eq!(s.tokens[1].sources, ["//billing.acme.com/*"]);
}

#[test]
fn bad_values_are_named() {
    let err = Settings::resolve(
        FlagsAndEnvironment::default(),
        file(r#"shutdown-grace = "soon""#),
    )
    .unwrap_err();
    assert!(err.to_string().contains("shutdown-grace"), "{err}");
    assert!(toml::from_str::<FileConfig>("no-such-key = 1").is_err());
    assert_eq!("1MiB".parse::<ByteSize>(), Ok(ByteSize(1 << 20)));
    assert!("12 parsecs".parse::<ByteSize>().is_err());
}

#[test]
fn sink_and_dispatch_tables() {
    let f = file(
        r#"
        admin-listen = "127.0.0.1:9091"
        instance-uri = "urn:tenant-gateway:prod-eu"
        [sink]
        kind = "webhook"
        url = "http://webhook-eventsource-svc.argo-events:12000/tenant-lifecycle"
        [dispatch]
        concurrency = 8
        retry-limit = "1h"
        initial-backoff = "2s"
        max-backoff = "1m"
        "#,
    );
    let flags = FlagsAndEnvironment {
        rules: Some("/etc/tenant-gateway/rules.yaml".into()),
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, f).unwrap();
    assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9091");
    assert_eq!(s.dispatch.instance_source, "urn:tenant-gateway:prod-eu");
    assert!(matches!(s.sink, SinkConfig::Webhook(_)));
    assert_eq!(s.dispatch.concurrency, 8);
    assert_eq!(s.dispatch.retry.retry_limit, Duration::from_secs(3600));
    assert_eq!(s.dispatch.retry.initial_backoff, Duration::from_secs(2));
    assert_eq!(s.dispatch.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(
        s.rules.as_deref(),
        Some(Path::new("/etc/tenant-gateway/rules.yaml"))
    );
    let defaults =
        Settings::resolve(FlagsAndEnvironment::default(), FileConfig::default()).unwrap();
    assert_eq!(defaults.sink, SinkConfig::Log);
    assert_eq!(
        defaults.dispatch.retry.retry_limit,
        Duration::from_secs(24 * 3600)
    );
    for bad in [
        "[dispatch]\nconcurrency = 0",
        "[dispatch]\nretry-limit = \"forever\"",
        "[dispatch]\ninitial-backoff = \"10m\"\nmax-backoff = \"1m\"",
        "instance-uri = \"gateway\"",
    ] {
        let err = Settings::resolve(FlagsAndEnvironment::default(), file(bad)).unwrap_err();
        assert!(err.to_string().starts_with("invalid "), "{bad}: {err}");
    }
    assert!(toml::from_str::<FileConfig>("[dispatch]\nretries = 3").is_err());
}

fn webhook_flags(url: Option<&str>, token_file: Option<&str>) -> FlagsAndEnvironment {
    FlagsAndEnvironment {
        sink: SinkFlags {
            kind: Some(SinkKind::Webhook),
            webhook_url: url.map(String::from),
            webhook_token_file: token_file.map(PathBuf::from),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    }
}

#[test]
fn sink_flags_win_over_the_sink_table() {
    let table = || {
        file(
            r#"
            [sink]
            kind = "webhook"
            url = "http://from-file:12000/lifecycle"
            token-file = "/file/token"
            timeout = "45s"
            "#,
        )
    };
    let s = Settings::resolve(webhook_flags(Some("http://from-flag/x"), None), table()).unwrap();
    let SinkConfig::Webhook(webhook) = s.sink else {
        panic!("not a webhook sink: {:?}", s.sink)
    };
    assert_eq!(webhook.url, "http://from-flag/x");
    // Keys no flag gives still come from the table.
    assert_eq!(
        webhook.token_file.as_deref(),
        Some(Path::new("/file/token"))
    );
    assert_eq!(webhook.timeout, Duration::from_secs(45));

    let s = Settings::resolve(webhook_flags(None, Some("/flag/token")), table()).unwrap();
    let SinkConfig::Webhook(webhook) = s.sink else {
        panic!("not a webhook sink: {:?}", s.sink)
    };
    assert_eq!(webhook.url, "http://from-file:12000/lifecycle");
    assert_eq!(
        webhook.token_file.as_deref(),
        Some(Path::new("/flag/token"))
    );

    // Another kind replaces the table: its keys belong to the other sink.
    let log = FlagsAndEnvironment {
        sink: SinkFlags {
            kind: Some(SinkKind::Log),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    assert_eq!(
        Settings::resolve(log, table()).unwrap().sink,
        SinkConfig::Log
    );
}

#[test]
fn sinks_from_flags_alone() {
    let s = Settings::resolve(
        webhook_flags(Some("http://es:12000/lifecycle"), Some("/t")),
        FileConfig::default(),
    )
    .unwrap();
    assert_eq!(
        s.sink,
        SinkConfig::Webhook(WebhookConfig {
            token_file: Some("/t".into()),
            ..WebhookConfig::new("http://es:12000/lifecycle".into())
        })
    );
    let eventbus = FlagsAndEnvironment {
        sink: SinkFlags {
            kind: Some(SinkKind::Eventbus),
            nats_url: Some("nats://bus:4222".into()),
            event_source_name: Some("tenant-gateway".into()),
            event_name: Some("lifecycle".into()),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(eventbus, FileConfig::default()).unwrap();
    let SinkConfig::Eventbus(bus) = s.sink else {
        panic!("not an eventbus sink: {:?}", s.sink)
    };
    assert_eq!(
        (bus.url.as_str(), bus.stream.as_str()),
        ("nats://bus:4222", "default")
    );
    assert_eq!(
        (bus.event_source_name.as_str(), bus.event_name.as_str()),
        ("tenant-gateway", "lifecycle")
    );
    // Flags only name what they change: the table's names stay when only the URL is given.
    let table =
        file("[sink]\nkind = \"eventbus\"\nevent-source-name = \"es\"\nevent-name = \"ev\"\n");
    let url_only = FlagsAndEnvironment {
        sink: SinkFlags {
            nats_url: Some("nats://other:4222".into()),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(url_only, table).unwrap();
    let SinkConfig::Eventbus(bus) = s.sink else {
        panic!("not an eventbus sink: {:?}", s.sink)
    };
    assert_eq!(
        (bus.url.as_str(), bus.event_source_name.as_str()),
        ("nats://other:4222", "es")
    );
}

#[test]
fn sink_flags_that_do_not_fit_are_refused() {
    let no_url = Settings::resolve(webhook_flags(None, None), FileConfig::default());
    assert!(no_url.unwrap_err().to_string().contains("webhook-url"));
    let stray = FlagsAndEnvironment {
        sink: SinkFlags {
            webhook_url: Some("http://es/x".into()),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    let err = Settings::resolve(stray, FileConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("does not apply to the log sink"),
        "{err}"
    );
    let no_names = FlagsAndEnvironment {
        sink: SinkFlags {
            kind: Some(SinkKind::Eventbus),
            event_name: Some("lifecycle".into()),
            ..SinkFlags::default()
        },
        ..FlagsAndEnvironment::default()
    };
    let err = Settings::resolve(no_names, FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("event-source-name"), "{err}");
}

#[test]
fn hardening_keys_resolve_and_rates_are_bounded() {
    let f: FileConfig = toml::from_str(
        r#"
        max-batch-events = 10
        max-extensions = 5
        max-attribute-length = "2KiB"
        body-read-timeout = "3s"
        require-signature = true
        signature-tolerance = "1m"
        rate-limit = 5.0
        [[signing-secrets]]
        name = "crm"
        file = "/run/secrets/crm"
        tenants = ["acme-*"]
        rate = 1.0
        "#,
    )
    .unwrap();
    let s = Settings::resolve(FlagsAndEnvironment::default(), f).unwrap();
    assert_eq!(s.decode_limits.max_batch_events, 10);
    assert_eq!(s.decode_limits.max_extensions, 5);
    assert_eq!(s.decode_limits.max_attribute_length, 2048);
    assert_eq!(s.body_read_timeout, Duration::from_secs(3));
    assert!(s.require_signature);
    assert_eq!(s.signature_tolerance, Duration::from_secs(60));
    assert_eq!(s.global_rate, Some((5.0, 5.0)));
    assert_eq!(s.signing_secrets[0].tenants, ["acme-*"]);
    for bad in [
        "rate-limit = 5e-324",
        "rate-limit = 1e7",
        "[[tokens]]\nname = \"t\"\nfile = \"/t\"\nrate = 0.0",
        "max-batch-events = 0",
    ] {
        let f: FileConfig = toml::from_str(bad).unwrap();
        assert!(
            Settings::resolve(FlagsAndEnvironment::default(), f).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn example_config_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tenant-gateway.example.toml");
    let f = FileConfig::load(&path).expect("example config parses");
    Settings::resolve(FlagsAndEnvironment::default(), f).expect("example config resolves");
}

/// The `[notify]` table of `text` with `{dir}` replaced by a directory holding a token
/// (`token`), a signing secret (`secret`) and an invalid one (`not-a-secret`).
fn notify_table(text: &str) -> (Result<Settings, ConfigError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    std::fs::write(
        dir.path().join("secret"),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("not-a-secret"), "whsec_***\n").unwrap();
    let text = text.replace("{dir}", &dir.path().display().to_string());
    let resolved = toml::from_str::<FileConfig>(&text)
        .map_err(|e| ConfigError::Invalid {
            key: "toml",
            reason: e.to_string(),
        })
        .and_then(|f| Settings::resolve(FlagsAndEnvironment::default(), f));
    (resolved, dir)
}

#[test]
fn notify_table_resolves_with_defaults() {
    let s = Settings::resolve(FlagsAndEnvironment::default(), FileConfig::default()).unwrap();
    assert_eq!(s.notify, None, "no table, no completion events");
    let (s, dir) = notify_table("[notify]\nurl = \"https://upstream.example/hooks\"\n");
    let notify = s.unwrap().notify.expect("the table is read");
    assert_eq!(notify.url, "https://upstream.example/hooks");
    assert_eq!(notify.timeout, Duration::from_secs(10));
    assert_eq!(
        (notify.token_file, notify.signing_secret_file),
        (None, None)
    );
    let (s, _) = notify_table(
        "[notify]\nurl = \"http://upstream:8080/hooks\"\ntoken-file = \"{dir}/token\"\n\
         signing-secret-file = \"{dir}/secret\"\ntimeout = \"2s 500ms\"\n",
    );
    let notify = s.unwrap().notify.expect("the table is read");
    assert_eq!(notify.timeout, Duration::from_millis(2500));
    assert!(notify.token_file.is_some_and(|p| p.ends_with("token")));
    assert!(notify
        .signing_secret_file
        .is_some_and(|p| p.ends_with("secret")));
    drop(dir);
}

#[test]
fn notify_mistakes_name_their_key() {
    for (table, key, says) in [
        ("url = \"ftp://upstream/x\"", "notify.url", "http or https"),
        ("url = \"upstream/hooks\"", "notify.url", "not a URL"),
        (
            "url = \"http://u/\"\ntoken-file = \"{dir}/missing\"",
            "notify.token-file",
            "missing",
        ),
        (
            "url = \"http://u/\"\nsigning-secret-file = \"{dir}/missing\"",
            "notify.signing-secret-file",
            "missing",
        ),
        (
            "url = \"http://u/\"\nsigning-secret-file = \"{dir}/not-a-secret\"",
            "notify.signing-secret-file",
            "whsec_",
        ),
        (
            "url = \"http://u/\"\ntimeout = \"0s\"",
            "notify.timeout",
            "more than zero",
        ),
        (
            "url = \"http://u/\"\ntimeout = \"soon\"",
            "notify.timeout",
            "soon",
        ),
    ] {
        let (resolved, _dir) = notify_table(&format!("[notify]\n{table}\n"));
        let err = resolved.expect_err(table);
        let shown = err.to_string();
        assert!(
            matches!(&err, ConfigError::Invalid { key: named, .. } if *named == key),
            "{table}: {shown}"
        );
        assert!(shown.contains(says), "{table}: {shown}");
    }
    let unknown = toml::from_str::<FileConfig>("[notify]\nurl = \"http://u/\"\nretries = 3\n");
    assert!(unknown.is_err(), "unknown keys are refused");
    let no_url = toml::from_str::<FileConfig>("[notify]\ntimeout = \"1s\"\n");
    assert!(no_url.is_err(), "the url is required");
}

#[test]
fn await_workflow_resolves_its_timeout_and_is_off_by_default() {
    let resolve = |text: &str| Settings::resolve(FlagsAndEnvironment::default(), file(text));
    let on = resolve(
        "watch-workflows = true\n[dispatch]\nawait-workflow = true\nawait-timeout = \"10m\"",
    )
    .expect("await-workflow with the watcher");
    assert_eq!(on.dispatch.await_workflow, Some(Duration::from_secs(600)));
    let default_timeout = resolve("watch-workflows = true\n[dispatch]\nawait-workflow = true")
        .expect("the default timeout");
    assert_eq!(
        default_timeout.dispatch.await_workflow,
        Some(crate::dispatch::DEFAULT_AWAIT_TIMEOUT)
    );
    let off = resolve("watch-workflows = true").expect("the watcher alone");
    assert_eq!(off.dispatch.await_workflow, None, "off unless asked for");
    let err = resolve(
        "watch-workflows = true\n[dispatch]\nawait-workflow = true\nawait-timeout = \"0s\"",
    )
    .expect_err("a zero timeout would park every tenant at once");
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "dispatch.await-timeout",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn await_workflow_needs_the_workflow_watcher() {
    let err = Settings::resolve(
        FlagsAndEnvironment::default(),
        file("[dispatch]\nawait-workflow = true"),
    )
    .expect_err("nothing would ever see a Workflow");
    let shown = err.to_string();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "dispatch.await-workflow",
                ..
            }
        ),
        "{shown}"
    );
    assert!(
        shown.contains("needs watch-workflows") && shown.contains("await-timeout"),
        "{shown}"
    );
    // The watcher may come from the flag or environment instead of the file.
    let flags = FlagsAndEnvironment {
        watch_workflows: Some(true),
        ..FlagsAndEnvironment::default()
    };
    let s = Settings::resolve(flags, file("[dispatch]\nawait-workflow = true"))
        .expect("watch-workflows from the flag");
    assert!(s.dispatch.await_workflow.is_some());
    // A flag that turns the file's watcher off is refused the same way.
    let flags = FlagsAndEnvironment {
        watch_workflows: Some(false),
        ..FlagsAndEnvironment::default()
    };
    let refused = Settings::resolve(
        flags,
        file("watch-workflows = true\n[dispatch]\nawait-workflow = true"),
    );
    assert!(refused.is_err(), "the flag switched the watcher off");
}
