//! The `kiln` binary: flags in, [`kiln_host`] does the work.

use anyhow::Context;
use clap::Parser;
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
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_json);
            let config = args.to_config();
            let server = kiln_host::Server::start(config)
                .await
                .context("kiln serve could not start")?;
            println!(
                "kiln listening on http://{} (token for organization `default` in {})",
                server.addr(),
                server.admin_token_path().display()
            );
            server.run_until_signal().await;
        }
    }
    Ok(())
}
