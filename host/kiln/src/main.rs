//! The `kiln` binary: `kiln serve` (feature `server`, on by default) and the
//! client commands. Flags in; `kiln-server` and `kiln-api` do the work.
//!
//! | module | what lives there |
//! |---|---|
//! | [`cli`] | the flags (clap), `kiln login`'s saved config, packing a context, plugin scaffolds |
//! | [`cli::commands`] | each command, as a client of `kiln_api::ApiClient` (or, for `init` and `plugin check`, of the local plugin runtime) |

mod cli;

use clap::{CommandFactory, Parser};
use cli::commands;
use cli::{Cli, Command};

#[cfg(feature = "server")]
fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a log file or a
    // journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(feature = "server")]
async fn serve(args: cli::ServeArgs) -> anyhow::Result<commands::ExitCode> {
    use anyhow::Context;
    init_tracing(args.log_json);
    let config = args.to_config()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = kiln_server::Server::start(config)
        .await
        .context("kiln serve could not start")?;
    println!(
        "kiln listening on {scheme}://{} (token for organization `default` in {})",
        server.addr(),
        server.admin_token_path().display()
    );
    println!(
        "dashboard: {scheme}://{}/ui/ (sign in with that token)",
        server.addr()
    );
    server.run_until_signal().await;
    Ok(0)
}

#[cfg(not(feature = "server"))]
async fn serve(_args: cli::ServeArgs) -> anyhow::Result<commands::ExitCode> {
    anyhow::bail!(
        "this kiln is the client only (built without the `server` feature); install the server with `cargo install kiln` (default features)"
    )
}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist: each takes a malloc arena of its
    // own at its first allocation, and the limit applies to arenas made
    // after it.
    #[cfg(feature = "server")]
    kiln_server::memory::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let outcome = match cli.command {
        // A server that cannot start says why with anyhow's whole chain.
        Command::Serve(args) => return serve(args).await.map(|_| ()),
        Command::Build(args) => commands::build(args).await,
        Command::Builds { command, server } => commands::builds(command, &server).await,
        Command::Context { command, server } => commands::context(command, &server).await,
        Command::Plugins { command, server } => commands::plugins(command, &server).await,
        Command::Projects { command, server } => commands::projects(command, &server).await,
        Command::Webhooks { command, server } => commands::webhooks(command, &server).await,
        Command::Secrets { command, server } => commands::secrets(command, &server).await,
        Command::Login(args) => commands::login(args).await,
        Command::Init(args) => commands::init(args).await,
        Command::Plugin { command } => commands::plugin(command).await,
        Command::Verify(args) => commands::verify(args).await,
        Command::Org { command, server } => commands::org(command, &server).await,
        Command::Token { command, server } => commands::token(command, &server).await,
        Command::Admin { command, server } => commands::admin(command, &server).await,
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
