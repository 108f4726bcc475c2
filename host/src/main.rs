//! The `kiln` binary: flags in, [`kiln_host`] does the work.

use anyhow::Context;
use clap::{CommandFactory, Parser};
use kiln_host::cli::commands;
use kiln_host::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_json);
            let config = args.to_config()?;
            let server = kiln_host::Server::start(config)
                .await
                .context("kiln serve could not start")?;
            println!(
                "kiln listening on http://{} (token for organization `default` in {})",
                server.addr(),
                server.admin_token_path().display()
            );
            server.run_until_signal().await;
            Ok(0)
        }
        Command::Build(args) => commands::build(args).await,
        Command::Builds { command, server } => commands::builds(command, &server).await,
        Command::Context { command, server } => commands::context(command, &server).await,
        Command::Plugins { command, server } => commands::plugins(command, &server).await,
        Command::Secrets { command, server } => commands::secrets(command, &server).await,
        Command::Login(args) => commands::login(args).await,
        Command::Init(args) => commands::init(args).await,
        Command::Plugin { command } => commands::plugin(command).await,
        Command::Org { command, server } => commands::org(command, &server).await,
        Command::Token { command, server } => commands::token(command, &server).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut std::io::stdout());
            Ok(0)
        }
    };
    match outcome {
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("kiln: {error}");
            std::process::exit(1);
        }
    }
}
