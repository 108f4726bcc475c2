//! The `kiln` binary: flags in, [`kiln_host`] does the work.

use anyhow::Context;
use clap::Parser;
use hyper::Method;
use kiln_host::cli::client::ApiClient;
use kiln_host::cli::{Cli, Command, OrgCommand, ServerArgs, TokenCommand};
use serde_json::json;
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
        Command::Org { command, server } => {
            let client = connect(&server)?;
            match command {
                OrgCommand::Create { name } => {
                    let org = client
                        .call(Method::POST, "/v1/orgs", Some(&json!({ "name": name })))
                        .await?;
                    println!(
                        "created organization {}",
                        org["name"].as_str().unwrap_or(&name)
                    );
                }
                OrgCommand::List => {
                    let answer = client.call(Method::GET, "/v1/orgs", None).await?;
                    for org in answer["orgs"].as_array().into_iter().flatten() {
                        println!("{}", org["name"].as_str().unwrap_or(""));
                    }
                }
            }
        }
        Command::Token { command, server } => {
            let client = connect(&server)?;
            match command {
                TokenCommand::Create { org } => {
                    let answer = client
                        .call(Method::POST, &format!("/v1/orgs/{org}/tokens"), None)
                        .await?;
                    // The token alone on stdout, so scripts can capture it.
                    println!("{}", answer["token"].as_str().unwrap_or(""));
                    eprintln!(
                        "token id {} for organization {org}; the token is shown only now",
                        answer["tokenId"].as_str().unwrap_or("")
                    );
                }
                TokenCommand::Revoke { org, token_id } => {
                    client
                        .call(
                            Method::DELETE,
                            &format!("/v1/orgs/{org}/tokens/{token_id}"),
                            None,
                        )
                        .await?;
                    eprintln!("revoked token {token_id} of organization {org}");
                }
            }
        }
    }
    Ok(())
}

fn connect(args: &ServerArgs) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(&args.server, args.token.as_deref())?)
}
