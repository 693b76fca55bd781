//! The command line: flags and environment against the settings they become, help texts.

use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::*;
use crate::config::{FileConfig, Settings};
use crate::discovery::render::RenderConfig;

/// clap reads `TENANT_GATEWAY_*` while parsing; every test that parses `serve` or
/// `discover` holds this lock, so the test that sets variables is never seen by another.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn parse_locked(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("tenant-gateway").chain(args.iter().copied()))
        .expect("valid flags")
        .command
}

fn serve_flags_locked(args: &[&str]) -> FlagsAndEnvironment {
    match parse_locked(&[&["serve"], args].concat()) {
        Command::Serve(args) => (*args).into(),
        other => panic!("unexpected {other:?}"),
    }
}

fn discover_settings(args: &[&str]) -> DiscoverSettings {
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match parse_locked(&[&["discover"], args].concat()) {
        Command::Discover(args) => args.into(),
        other => panic!("unexpected {other:?}"),
    }
}

fn file(text: &str) -> FileConfig {
    toml::from_str(text).expect("valid toml")
}

#[test]
fn environment_sits_between_flags_and_file() {
    let env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("TENANT_GATEWAY_STORE", "sqlite://from-env.db");
    std::env::set_var("TENANT_GATEWAY_MAX_BODY", "4KiB");
    std::env::set_var("TENANT_GATEWAY_SINK", "webhook");
    std::env::set_var("TENANT_GATEWAY_WEBHOOK_URL", "http://from-env/lifecycle");
    let from_env = serve_flags_locked(&[]);
    let flag_wins = serve_flags_locked(&[
        "--store",
        "sqlite://from-flag.db",
        "--webhook-url",
        "http://from-flag/lifecycle",
    ]);
    for name in [
        "TENANT_GATEWAY_STORE",
        "TENANT_GATEWAY_MAX_BODY",
        "TENANT_GATEWAY_SINK",
        "TENANT_GATEWAY_WEBHOOK_URL",
    ] {
        std::env::remove_var(name);
    }
    drop(env);

    let f = || {
        file(
            "store = \"sqlite://from-file.db\"\n\
             [sink]\nkind = \"webhook\"\nurl = \"http://from-file/lifecycle\"\n",
        )
    };
    let webhook_url = |s: &Settings| match &s.sink {
        crate::dispatch::sinks::SinkConfig::Webhook(w) => w.url.clone(),
        other => panic!("not a webhook sink: {other:?}"),
    };
    let s = Settings::resolve(from_env, f()).unwrap();
    assert_eq!(s.store, "sqlite://from-env.db");
    assert_eq!(s.max_body, 4096);
    assert_eq!(webhook_url(&s), "http://from-env/lifecycle");
    let s = Settings::resolve(flag_wins, f()).unwrap();
    assert_eq!(s.store, "sqlite://from-flag.db");
    assert_eq!(webhook_url(&s), "http://from-flag/lifecycle");
    let s = Settings::resolve(FlagsAndEnvironment::default(), f()).unwrap();
    assert_eq!(webhook_url(&s), "http://from-file/lifecycle");
}

#[test]
fn serve_flags_become_settings() {
    let flags = {
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        serve_flags_locked(&[
            "--shutdown-grace",
            "250ms",
            "--log-format",
            "json",
            "--token-file",
            "/run/a,/run/b",
        ])
    };
    assert_eq!(flags.shutdown_grace, Some(Duration::from_millis(250)));
    assert_eq!(flags.log_format, Some(LogFormat::Json));
    assert_eq!(
        flags.token_files,
        [PathBuf::from("/run/a"), "/run/b".into()]
    );
}

#[test]
fn discover_defaults_are_the_library_defaults() {
    assert_eq!(discover_settings(&[]), DiscoverSettings::default());
}

#[test]
fn discover_flags_become_settings() {
    let settings = discover_settings(&[
        "--workflow-namespace",
        "workflows",
        "--bridge-service-account",
        "bridge",
        "--job-ttl",
        "30m",
        "--default-timeout",
        "2h",
        "--object-storage-secret",
        "s3-creds",
        "--actions",
        "upsert,lifecycle.delete,upsert",
        "--namespace",
        "team-a",
        "--namespace",
        "team-b",
        "-o",
        "json",
        "--debounce",
        "10ms",
    ]);
    assert_eq!(settings.namespaces, ["team-a", "team-b"]);
    assert_eq!(settings.output, OutputFormat::Json);
    assert_eq!(settings.debounce, Duration::from_millis(10));
    let config = RenderConfig::from_settings(&settings);
    assert_eq!(config.workflow_namespace, "workflows");
    assert_eq!(config.bridge_service_account, "bridge");
    assert_eq!(config.job_ttl, Duration::from_secs(1800));
    assert_eq!(config.default_timeout, Duration::from_secs(7200));
    assert_eq!(config.object_storage_secret.as_deref(), Some("s3-creds"));
    assert_eq!(config.actions, ["upsert", "delete"]);
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("tenant-gateway").chain(args.iter().copied()))
    };
    let id = "0190a2b4-0000-7000-8000-000000000001";
    let Command::Replay(replay) = parse(&["replay", id, id, "--reason", "fixed"])
        .unwrap()
        .command
    else {
        panic!("not replay")
    };
    assert_eq!(replay.event_ids.len(), 2);
    assert_eq!(replay.client.server, "http://127.0.0.1:8081");
    assert_eq!(replay.client.output, AdminOutput::Table);
    let Command::Replay(bulk) = parse(&[
        "replay", "--status", "dead", "--since", "2h", "--rate", "5", "-y", "-o", "json",
    ])
    .unwrap()
    .command
    else {
        panic!("not replay")
    };
    assert!(bulk.event_ids.is_empty() && bulk.yes);
    assert_eq!(bulk.rate, Some(5.0));
    assert_eq!(bulk.client.output, AdminOutput::Json);
    let invocation = Invocation::from(bulk);
    assert_eq!(invocation.output, Output::Json);
    assert_eq!(invocation.client.server, "http://127.0.0.1:8081");
    let AdminCommand::Replay(bulk) = invocation.command else {
        panic!("not replay")
    };
    assert_eq!(bulk.selection.status, Some(EventStatus::Dead));
    assert_eq!(bulk.selection.since, Some("2h".parse().unwrap()));
    assert!(bulk.yes && !bulk.dry_run && bulk.cancel.is_none());
    let Command::Events(list) = parse(&[
        "events",
        "list",
        "--server",
        "http://gw:8081",
        "--token-file",
        "/t",
        "--tenant",
        "acme",
        "--limit",
        "2",
        "--all",
        "--cursor",
        "c1",
    ])
    .unwrap()
    .command
    else {
        panic!("not events")
    };
    let invocation = Invocation::from(list);
    assert_eq!(invocation.client.server, "http://gw:8081");
    assert_eq!(invocation.client.token_file, Some(PathBuf::from("/t")));
    assert_eq!(invocation.output, Output::Table);
    assert_eq!(
        invocation.command,
        AdminCommand::ListEvents(ListEvents {
            selection: EventSelection {
                tenant: Some("acme".into()),
                ..EventSelection::default()
            },
            limit: Some(2),
            cursor: Some("c1".into()),
            all: true,
        })
    );
    for refused in [
        &["replay"][..],
        &["replay", "--dry-run"],
        &["replay", id, "--tenant", "acme"],
        &["replay", id, "--dry-run"],
        &["replay", "--cancel", id, "--status", "dead"],
        &["replay", "--tenant", "acme", "--rate", "0"],
        &["replay", "--tenant", "acme", "--rate", "10001"],
        &["replay", "--status", "lost"],
        &["skip", id],
        &["events", "list", "--limit", "0"],
        &["events", "list", "--limit", "1001"],
        &["events", "show", "not-a-uuid"],
    ] {
        assert!(parse(refused).is_err(), "{refused:?} was accepted");
    }
    assert!(parse(&["events", "list", "--all", "--tenant", "acme", "--limit", "1000"]).is_ok());
    assert!(parse(&[
        "tenants",
        "show",
        "acme",
        "--limit",
        "5",
        "--server",
        "http://gw:8081"
    ])
    .is_ok());
    assert!(parse(&["replay", "--cancel", id]).is_ok());
}

#[test]
fn status_flag_values_are_the_journal_states() {
    let flags: Vec<(String, EventStatus)> = StatusArg::value_variants()
        .iter()
        .map(|arg| {
            let name = arg
                .to_possible_value()
                .expect("shown")
                .get_name()
                .to_owned();
            (name, EventStatus::from(*arg))
        })
        .collect();
    let states: Vec<(String, EventStatus)> = EventStatus::ALL
        .iter()
        .map(|status| (status.as_str().to_owned(), *status))
        .collect();
    assert_eq!(flags, states);
}

/// Scripts pass `--yes` to every replay, by id too.
#[test]
fn replay_by_id_accepts_yes() {
    let id = "0190a2b4-0000-7000-8000-000000000001";
    for yes in ["--yes", "-y"] {
        let parsed = Cli::try_parse_from(["tenant-gateway", "replay", id, yes, "--reason", "r"]);
        let Command::Replay(replay) = parsed.expect("accepted").command else {
            panic!("not replay")
        };
        assert!(replay.yes);
        assert_eq!(replay.event_ids.len(), 1);
    }
}

/// Every command and subcommand shows an example in its `--help`.
#[test]
fn every_command_help_shows_an_example() {
    fn visit(command: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name());
        let has_subcommands = command.has_subcommands();
        let help = command.render_long_help().to_string();
        if !help.contains("Example:\n  tenant-gateway ") {
            missing.push(path.clone());
        }
        if has_subcommands {
            for sub in command.get_subcommands_mut() {
                if sub.get_name() != "help" {
                    visit(sub, &path, missing);
                }
            }
        }
    }
    let mut root = Cli::command();
    root.build();
    let mut missing = Vec::new();
    for sub in root.get_subcommands_mut() {
        if sub.get_name() != "help" {
            visit(sub, "tenant-gateway", &mut missing);
        }
    }
    assert!(missing.is_empty(), "no example in --help of {missing:?}");
}

#[test]
fn watch_workflows_is_off_by_default_and_layers_like_the_other_switches() {
    let env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let resolve = |flags: FlagsAndEnvironment, toml: &str| {
        Settings::resolve(flags, file(toml)).expect("resolves")
    };
    let none = serve_flags_locked(&[]);
    assert!(!resolve(none.clone(), "").watch_workflows);
    assert!(resolve(none, "watch-workflows = true").watch_workflows);
    // A bare flag is true; an explicit false wins over the file.
    assert!(resolve(serve_flags_locked(&["--watch-workflows"]), "").watch_workflows);
    let off = serve_flags_locked(&["--watch-workflows=false"]);
    assert!(!resolve(off, "watch-workflows = true").watch_workflows);
    std::env::set_var("TENANT_GATEWAY_WATCH_WORKFLOWS", "true");
    let from_env = serve_flags_locked(&["--workflow-namespace", "team-a"]);
    std::env::remove_var("TENANT_GATEWAY_WATCH_WORKFLOWS");
    drop(env);
    let s = resolve(from_env, "watch-workflows = false");
    assert!(s.watch_workflows, "the environment wins over the file");
    // The watch uses the one workflow namespace setting.
    assert_eq!(s.workflow_namespace, "team-a");
}

#[test]
fn lifecycle_and_outcome_flag_values_are_the_journal_words() {
    let name =
        |value: Option<clap::builder::PossibleValue>| value.expect("shown").get_name().to_owned();
    let lifecycles: Vec<(String, Lifecycle)> = LifecycleArg::value_variants()
        .iter()
        .map(|arg| (name(arg.to_possible_value()), Lifecycle::from(*arg)))
        .collect();
    let words: Vec<(String, Lifecycle)> = Lifecycle::ALL
        .iter()
        .map(|l| (l.as_str().to_owned(), *l))
        .collect();
    assert_eq!(lifecycles, words);
    let outcomes: Vec<(String, LifecycleOutcome)> = OutcomeArg::value_variants()
        .iter()
        .map(|arg| (name(arg.to_possible_value()), LifecycleOutcome::from(*arg)))
        .collect();
    let words: Vec<(String, LifecycleOutcome)> = LifecycleOutcome::ALL
        .iter()
        .map(|o| (o.as_str().to_owned(), *o))
        .collect();
    assert_eq!(outcomes, words);
}

#[test]
fn tenants_list_and_workflow_phase_flags_become_commands() {
    use crate::journal::WorkflowPhase;
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("tenant-gateway").chain(args.iter().copied()))
    };
    let Command::Tenants(list) = parse(&[
        "tenants",
        "list",
        "--outcome",
        "failed",
        "--lifecycle",
        "migrated-out",
        "--action",
        "lifecycle.upsert",
        "--limit",
        "50",
        "-o",
        "json",
    ])
    .unwrap()
    .command
    else {
        panic!("not tenants")
    };
    let invocation = Invocation::from(list);
    assert_eq!(invocation.output, Output::Json);
    assert_eq!(
        invocation.command,
        AdminCommand::ListTenants(ListTenants {
            filter: TenantFilter {
                lifecycle: Some(Lifecycle::MigratedOut),
                outcome: Some(LifecycleOutcome::Failed),
                action: Some("lifecycle.upsert".into()),
            },
            limit: Some(50),
        })
    );
    let Command::Replay(replay) = parse(&[
        "replay",
        "--workflow-phase",
        "Failed,Error",
        "--action",
        "migrate-in",
        "--since",
        "24h",
        "--dry-run",
    ])
    .unwrap()
    .command
    else {
        panic!("not replay")
    };
    let AdminCommand::Replay(replay) = Invocation::from(replay).command else {
        panic!("not replay")
    };
    assert!(replay.dry_run);
    assert_eq!(
        replay.selection.workflow_phases,
        [WorkflowPhase::Failed, WorkflowPhase::Error]
    );
    // A phase alone selects a bulk replay; events list takes it too.
    assert!(parse(&["replay", "--workflow-phase", "Failed", "--dry-run"]).is_ok());
    let Command::Events(events) = parse(&["events", "list", "--workflow-phase", "Running"])
        .unwrap()
        .command
    else {
        panic!("not events")
    };
    let AdminCommand::ListEvents(list) = Invocation::from(events).command else {
        panic!("not events list")
    };
    assert_eq!(list.selection.workflow_phases, [WorkflowPhase::Running]);
    for refused in [
        &["replay", "--workflow-phase", "failed"][..],
        &["replay", "--workflow-phase", "Failed,"],
        &[
            "replay",
            "0190a2b4-0000-7000-8000-000000000001",
            "--workflow-phase",
            "Failed",
        ],
        &["events", "list", "--workflow-phase", "Lost"],
        &["tenants", "list", "--outcome", "error"],
        &["tenants", "list", "--lifecycle", "gone"],
        &["tenants", "list", "--limit", "0"],
    ] {
        assert!(parse(refused).is_err(), "{refused:?} was accepted");
    }
    let error = parse(&["events", "list", "--workflow-phase", "Lost"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Pending, Running, Succeeded, Failed, Error"),
        "{error}"
    );
}
