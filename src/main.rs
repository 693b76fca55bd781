//! The `tenant-gateway` binary: parse the command line, load configuration, start telemetry,
//! dispatch to library code.

use clap::Parser;
use tenant_gateway::admin::client::commands::{self as admin, Console, Invocation};
use tenant_gateway::cli::{Cli, Command, JournalCommand, RulesCommand};
use tenant_gateway::{app, config, discovery, ingest, journal, normalize, telemetry};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line with the whole cause chain, then a non-zero exit. `ErrorChain` rather than
        // anyhow's `{:#}`: messages that already quote their cause are not repeated.
        eprintln!("tenant-gateway: {}", telemetry::ErrorChain(&*e));
        std::process::exit(1);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = config::Settings::load((*args).into())?;
            telemetry::init(settings.log_format);
            app::serve(settings).await
        }
        Command::Discover(args) => {
            let settings = discovery::DiscoverSettings::from(args);
            telemetry::init(settings.log_format);
            discovery::run(settings).await
        }
        Command::Send(args) => {
            let answer = ingest::send::run(args.into()).await?;
            println!("{answer}");
            Ok(())
        }
        Command::Rules(rules) => match rules.command {
            RulesCommand::Check(args) => {
                let report =
                    normalize::rules::check(&args.file, args.event.as_deref(), &args.actions)?;
                println!("{report}");
                Ok(())
            }
        },
        Command::Journal(journal) => match journal.command {
            JournalCommand::Copy(args) => {
                let report =
                    journal::copy::copy_journal(&args.from, &args.to, Default::default()).await?;
                print!("{report}");
                Ok(())
            }
        },
        Command::Events(args) => run_admin(args.into()).await,
        Command::Replay(args) => run_admin(args.into()).await,
        Command::Skip(args) => run_admin(args.into()).await,
        Command::Tenants(args) => run_admin(args.into()).await,
    }
}

/// An admin command on the process's stdio.
async fn run_admin(invocation: Invocation) -> anyhow::Result<()> {
    Ok(admin::run(invocation, &mut Console::stdio()).await?)
}
