//! The `tenant-gateway` binary: parse the command line, load configuration, start telemetry,
//! dispatch to library code.

use clap::Parser;
use tenant_gateway::admin::client::{self as admin_client, Console};
use tenant_gateway::cli::{Cli, Command, RulesCommand};
use tenant_gateway::{app, config, discovery, ingest, normalize, telemetry};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line with the whole cause chain, then a non-zero exit.
        eprintln!("tenant-gateway: {e:#}");
        std::process::exit(1);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = config::Settings::load(args)?;
            telemetry::init(settings.log_format);
            app::serve(settings).await
        }
        Command::Discover(args) => {
            telemetry::init(args.log_format);
            discovery::run(args).await
        }
        Command::Send(args) => {
            let answer = ingest::send::run(args).await?;
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
        Command::Events(args) => Ok(admin_client::events(args, &mut Console::stdio()).await?),
        Command::Replay(args) => Ok(admin_client::replay(args, &mut Console::stdio()).await?),
        Command::Skip(args) => Ok(admin_client::skip(args, &mut Console::stdio()).await?),
        Command::Tenants(args) => Ok(admin_client::tenants(args, &mut Console::stdio()).await?),
    }
}
