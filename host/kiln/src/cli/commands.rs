//! The client commands. Output is plain and stable when standard output is
//! not a terminal (for scripts and CI logs); colour and progress bars only
//! on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use base64::Engine as _;
use hyper::Method;

use super::{
    config, pack, AdminCommand, BuildArgs, BuildsCommand, ContextCommand, LoginArgs, OrgCommand,
    Output, PluginCommand, PluginsCommand, ProjectsCommand, SecretValue, SecretsCommand,
    ServerArgs, TokenCommand, VerifyArgs, WebhooksCommand,
};
use kiln_api::builds::MAX_INLINE_ZIP_BYTES;
use kiln_api::{
    ApiClient, Build, BuildStatus, ClientError, CreateBuildRequest, GitSourceRequest, ListBuilds,
    LogLine,
};

/// Why a client command failed; `main` prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Pack(#[from] pack::PackError),
    #[error("{0}")]
    Usage(String),
    #[error("verification failed: {0}")]
    Verify(#[from] kiln_trust::VerifyError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Scaffold(#[from] super::scaffold::ScaffoldError),
    #[cfg(feature = "server")]
    #[error(transparent)]
    ConfigFile(#[from] kiln_server::config::ConfigFileError),
    #[cfg(feature = "server")]
    #[error(transparent)]
    Plugins(#[from] kiln_server::plugins::PluginError),
}

macro_rules! usage {
    ($($arg:tt)*) => {
        CommandError::Usage(format!($($arg)*))
    };
}

/// What the process should exit with.
pub type ExitCode = i32;

const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

/// Connect with flags/env first, then the saved config.
pub fn connect(args: &ServerArgs) -> Result<ApiClient, CommandError> {
    let saved = config::load()?;
    let server = args
        .server
        .clone()
        .or(saved.server)
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let token = args.token.clone().or(saved.token);
    let ca_cert = args.transport.ca_cert.clone().or(saved.ca_cert);
    client_for(
        &server,
        token.as_deref(),
        ca_cert.as_deref(),
        args.transport.insecure,
    )
}

/// A client of `server`, trusting the system's roots and `ca_cert`.
fn client_for(
    server: &str,
    token: Option<&str>,
    ca_cert: Option<&std::path::Path>,
    insecure: bool,
) -> Result<ApiClient, CommandError> {
    let ca_certs_pem = match ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| usage!("cannot read the CA certificates {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let options = kiln_api::client::ClientOptions {
        ca_certs_pem,
        insecure,
    };
    Ok(ApiClient::with_options(server, token, &options)?)
}

struct Style {
    tty: bool,
}

impl Style {
    fn stdout() -> Self {
        Style {
            tty: std::io::stdout().is_terminal(),
        }
    }
    fn paint(&self, code: &str, text: &str) -> String {
        if self.tty {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

// ---- kiln build ----

/// Split `name:tag` (a registry-style `host:port/name:tag` is refused: the
/// server decides the registry).
fn split_tag(tag: &str) -> Result<(String, String), CommandError> {
    let last_slash = tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag_part) = match tag[last_slash..].rfind(':') {
        Some(colon) => (&tag[..last_slash + colon], &tag[last_slash + colon + 1..]),
        None => (tag, "latest"),
    };
    if name.contains(':')
        || name
            .split('/')
            .next()
            .is_some_and(|first| first.contains('.') && tag.contains('/'))
    {
        return Err(CommandError::Usage(format!(
            "-t {tag}: give `name:tag` only; the server pushes to its own registry under your organization"
        )));
    }
    Ok((name.to_string(), tag_part.to_string()))
}

fn build_args(pairs: &[String]) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) => {
                out.insert(key.to_string(), value.to_string());
            }
            None => {
                // Like docker: a bare KEY that is not set is left out.
                if let Ok(value) = std::env::var(pair) {
                    out.insert(pair.clone(), value);
                }
            }
        }
    }
    out
}

/// `URL#REF:DIR` → gitSource.
fn git_source(spec: &str) -> GitSourceRequest {
    let (url, fragment) = spec.split_once('#').unwrap_or((spec, ""));
    let (reference, dir) = fragment.split_once(':').unwrap_or((fragment, ""));
    let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
    GitSourceRequest {
        url: url.to_string(),
        reference: given(reference),
        context_dir: given(dir),
        submodules: None,
    }
}

fn progress_bar(tty: bool, total: u64, what: &str) -> indicatif::ProgressBar {
    if !tty {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Pack the directory; inline when small, else upload. Sets the request's
/// context field (`zippedCode` or `contextId`).
async fn send_context(
    client: &ApiClient,
    dir: &std::path::Path,
    dockerfile: &str,
    include_git: bool,
    request: &mut CreateBuildRequest,
) -> Result<(), CommandError> {
    let tty = std::io::stderr().is_terminal();
    let files = pack::context_files(dir, dockerfile, include_git)?;
    let total: u64 = files
        .iter()
        .filter_map(|(_, p)| std::fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let archive = tempfile::NamedTempFile::new()?;
    let bar = progress_bar(tty, total, "packing");
    let packed = {
        let bar = bar.clone();
        let out = archive.reopen()?;
        let files = files.clone();
        tokio::task::spawn_blocking(move || pack::pack_zip(&files, out, |n| bar.inc(n)))
            .await
            .map_err(|e| CommandError::Usage(e.to_string()))??
    };
    bar.finish_and_clear();
    let size = archive.as_file().metadata()?.len();
    if !tty {
        eprintln!(
            "packed {} files ({} bytes) into {} bytes",
            packed.files, packed.bytes, size
        );
    }
    if size as usize <= MAX_INLINE_ZIP_BYTES {
        let bytes = std::fs::read(archive.path())?;
        request.zipped_code = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        return Ok(());
    }
    let bar = Arc::new(progress_bar(tty, size, "uploading"));
    let counter = bar.clone();
    let uploaded = client
        .upload_context(archive.path(), move |n| counter.inc(n))
        .await?;
    bar.finish_and_clear();
    if !tty {
        eprintln!("uploaded the context ({size} bytes)");
    }
    request.context_id = Some(uploaded.context_id);
    Ok(())
}

/// `kiln build`.
pub async fn build(args: BuildArgs) -> Result<ExitCode, CommandError> {
    let client = connect(&args.server)?;
    let mut name = None;
    let mut tags = Vec::new();
    for tag in &args.tags {
        let (n, t) = split_tag(tag)?;
        if name.as_ref().is_some_and(|existing| existing != &n) {
            return Err(CommandError::Usage(format!(
                "every -t must name the same image; got {} and {n}",
                name.unwrap()
            )));
        }
        name = Some(n);
        tags.push(t);
    }
    let build_args = build_args(&args.build_args);
    let listed = |items: &[String]| (!items.is_empty()).then(|| items.to_vec());
    let mut request = CreateBuildRequest {
        name: name.unwrap_or_default(),
        tags: Some(tags),
        dockerfile: Some(args.file.clone()),
        no_cache: Some(args.no_cache),
        build_args: (!build_args.is_empty()).then_some(build_args),
        target: args.target.clone(),
        builder: args.builder.clone(),
        profile: args.profile.clone(),
        timeout_secs: args.timeout,
        secrets: listed(&args.secrets),
        secret_build_args: listed(&args.secret_build_args),
        ..Default::default()
    };
    // `--platform a,b`: one image for several platforms.
    if let Some(platforms) = &args.platform {
        let platforms: Vec<String> = platforms.split(',').map(|p| p.trim().to_string()).collect();
        match <[String; 1]>::try_from(platforms) {
            Ok([one]) => request.platform = Some(one),
            Err(several) => request.platforms = Some(several),
        }
    }
    match &args.git {
        Some(spec) => request.git_source = Some(git_source(spec)),
        None => {
            send_context(
                &client,
                &args.dir,
                &args.file,
                args.include_git,
                &mut request,
            )
            .await?
        }
    }
    let accepted = client.create_build(&request).await?;
    let build_id = accepted.build_id;
    if args.detach {
        println!("{build_id}");
        return Ok(0);
    }
    eprintln!(
        "build {build_id} (#{}) accepted; following its log",
        accepted.number
    );
    follow_build(&client, &build_id, args.cancel_on_interrupt).await
}

/// Follow a build's log to the end, handling Ctrl-C, then print the result.
async fn follow_build(
    client: &ApiClient,
    build_id: &str,
    cancel_on_interrupt: bool,
) -> Result<ExitCode, CommandError> {
    let style = Style::stdout();
    let follow = client.stream_log(build_id, true, true, |line| print_log_line(&style, &line));
    tokio::pin!(follow);
    tokio::select! {
        result = &mut follow => result?,
        _ = tokio::signal::ctrl_c() => {
            let cancel = cancel_on_interrupt || ask_to_cancel(build_id);
            if cancel {
                client.cancel_build(build_id).await?;
                eprintln!("cancelling build {build_id}");
                // Show the rest of the log up to the end.
                follow.await?;
            } else {
                eprintln!("build {build_id} goes on; follow it with `kiln builds logs {build_id} --follow`");
                return Ok(130);
            }
        }
    }
    let build = client.get_build(build_id).await?;
    print_result(&style, &build);
    Ok(match build.status {
        BuildStatus::Succeeded => 0,
        BuildStatus::Cancelled => 130,
        _ => 1,
    })
}

fn ask_to_cancel(build_id: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("\ncancel build {build_id}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim().eq_ignore_ascii_case("y")
}

fn print_log_line(style: &Style, line: &LogLine) {
    let text = line.line.as_str();
    let printed = match line.stream.as_str() {
        "system" => style.paint("2", text),
        _ if text.contains("ERROR") => style.paint("31", text),
        _ => text.to_string(),
    };
    println!("{printed}");
}

/// A number the server may not know yet, as `null` (what scripts parsing
/// this line have always seen).
fn or_null<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// Where a finished build's time went, one line.
fn phases_line(p: &kiln_api::Phases) -> String {
    let s = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
    format!(
        "phases: queued {}, context {}, build {}, push {}",
        s(p.queued_ms),
        s(p.context_ms),
        s(p.build_ms),
        s(p.push_ms)
    )
}

fn print_result(style: &Style, build: &Build) {
    match build.status {
        BuildStatus::Succeeded => {
            println!("{}", style.paint("32", "build succeeded"));
            for image in &build.image_refs {
                println!("image:  {image}");
            }
            println!("digest: {}", build.digest.as_deref().unwrap_or_default());
            for image in &build.platforms {
                println!(
                    "  {}: {} ({} bytes, {} layers{})",
                    image.platform,
                    image.digest,
                    image.size_bytes,
                    image.layer_count,
                    image
                        .engine
                        .as_deref()
                        .map(|e| format!(", engine {e}"))
                        .unwrap_or_default()
                );
            }
            let m = build.metrics.clone().unwrap_or_default();
            println!(
                "took {:.1}s, image {} bytes in {} layers, {} of {} steps cached",
                m.duration_ms as f64 / 1000.0,
                or_null(m.image_size_bytes),
                or_null(m.layer_count),
                m.cached_steps,
                m.total_steps
            );
            if let Some(p) = &m.phases {
                println!("{}", phases_line(p));
            }
        }
        BuildStatus::Failed => {
            let (reason, message, hint) = match &build.failure {
                Some(f) => (
                    serde_json::to_value(f.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    f.message.as_str(),
                    f.hint.as_str(),
                ),
                None => (String::new(), "", ""),
            };
            println!(
                "{} ({reason}): {message}",
                style.paint("31", "build failed")
            );
            println!("hint: {hint}");
        }
        other => println!("build ended {other}"),
    }
}

// ---- kiln builds ----

pub async fn builds(command: BuildsCommand, server: &ServerArgs) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        BuildsCommand::List {
            status,
            name,
            branch,
            project,
            limit,
            output,
        } => {
            let status = match status {
                Some(text) => Some(BuildStatus::parse(&text).ok_or_else(|| {
                    usage!("--status {text:?} is not a build status: pending, running, succeeded, failed or cancelled")
                })?),
                None => None,
            };
            let page = client
                .list_builds(&ListBuilds {
                    status,
                    name,
                    branch,
                    project_id: project,
                    page_size: Some(limit.clamp(1, 1000)),
                    page_token: None,
                })
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&page.builds).unwrap()),
                Output::Table => print_build_table(&page.builds),
            }
        }
        BuildsCommand::Get { id, output } => {
            let build = client.get_build(&id).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&build).unwrap()),
                Output::Table => {
                    print_build_table(std::slice::from_ref(&build));
                    print_result(&Style::stdout(), &build);
                }
            }
        }
        BuildsCommand::Logs {
            id,
            follow,
            from_start,
        } => {
            let style = Style::stdout();
            let from_start = from_start || !follow;
            client
                .stream_log(&id, from_start, follow, |line| {
                    print_log_line(&style, &line)
                })
                .await?;
        }
        BuildsCommand::Cancel { id } => {
            let build = client.cancel_build(&id).await?;
            println!("{id} {}", build.status);
        }
    }
    Ok(0)
}

fn short_status(status: &str) -> &str {
    status.strip_prefix("BUILD_STATUS_").unwrap_or(status)
}

fn print_build_table(builds: &[Build]) {
    let rows: Vec<[String; 6]> = builds
        .iter()
        .map(|b| {
            let duration = b
                .metrics
                .as_ref()
                .map(|m| format!("{:.1}s", m.duration_ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            [
                b.build_id.clone(),
                b.name.clone(),
                format!("#{}", b.number),
                short_status(b.status.as_str()).to_string(),
                b.create_time.format("%Y-%m-%dT%H:%M:%S").to_string(),
                duration,
            ]
        })
        .collect();
    print_table(
        &[
            "BUILD ID", "NAME", "NUMBER", "STATUS", "CREATED", "DURATION",
        ],
        &rows,
    );
}

fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

// ---- kiln context ----

pub async fn context(
    command: ContextCommand,
    server: &ServerArgs,
) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    let ContextCommand::Upload { path, include_git } = command;
    let uploaded = if path.is_dir() {
        send_context_upload(&client, &path, include_git).await?
    } else {
        let tty = std::io::stderr().is_terminal();
        let size = std::fs::metadata(&path)?.len();
        let bar = Arc::new(progress_bar(tty, size, "uploading"));
        let counter = bar.clone();
        let uploaded = client
            .upload_context(&path, move |n| counter.inc(n))
            .await?;
        bar.finish_and_clear();
        uploaded
    };
    println!("{}", uploaded.context_id);
    Ok(0)
}

/// Pack a directory and always upload it (no inline path).
async fn send_context_upload(
    client: &ApiClient,
    dir: &std::path::Path,
    include_git: bool,
) -> Result<kiln_api::UploadedContext, CommandError> {
    let files = pack::context_files(dir, "Dockerfile", include_git)?;
    let archive = tempfile::NamedTempFile::new()?;
    let out = archive.reopen()?;
    tokio::task::spawn_blocking(move || pack::pack_zip(&files, out, |_| {}))
        .await
        .map_err(|e| CommandError::Usage(e.to_string()))??;
    let tty = std::io::stderr().is_terminal();
    let size = archive.as_file().metadata()?.len();
    let bar = Arc::new(progress_bar(tty, size, "uploading"));
    let counter = bar.clone();
    let uploaded = client
        .upload_context(archive.path(), move |n| counter.inc(n))
        .await?;
    bar.finish_and_clear();
    Ok(uploaded)
}

// ---- kiln secrets ----

fn value_or_stdin(value: Option<String>, what: &str) -> Result<String, CommandError> {
    if let Some(value) = value {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        eprint!("{what}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let value = line.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(CommandError::Usage(format!("no {what} given")));
    }
    Ok(value)
}

pub async fn secrets(
    command: SecretsCommand,
    server: &ServerArgs,
) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        SecretsCommand::Set { secret } => {
            let mut body = kiln_api::SaveSecretsRequest::default();
            match secret {
                SecretValue::Build { name, value } => {
                    let value = value_or_stdin(value, &format!("value of {name}"))?;
                    body.build_secrets.insert(name, Some(value));
                }
                SecretValue::Registry {
                    host,
                    username,
                    password,
                } => {
                    let password =
                        value_or_stdin(password, &format!("password for {username}@{host}"))?;
                    let credential = kiln_api::CredentialInput { username, password };
                    body.registry_credentials.insert(host, Some(credential));
                }
                SecretValue::Git {
                    host,
                    username,
                    token,
                } => {
                    let token = value_or_stdin(token, &format!("token for {username}@{host}"))?;
                    let credential = kiln_api::CredentialInput {
                        username,
                        password: token,
                    };
                    body.git_credentials.insert(host, Some(credential));
                }
            }
            client.save_secrets(&body).await?;
            eprintln!("saved");
        }
        SecretsCommand::List => {
            let secrets = client.list_secrets().await?;
            let row = |kind: &str, name: &String| [kind.to_string(), name.clone(), "***".into()];
            let rows: Vec<[String; 3]> = (secrets.registry_credentials.keys())
                .map(|name| row("registry", name))
                .chain(secrets.git_credentials.keys().map(|name| row("git", name)))
                .chain(secrets.build_secrets.keys().map(|name| row("build", name)))
                .collect();
            print_table(&["KIND", "NAME", "VALUE"], &rows);
        }
        SecretsCommand::Delete { kind, name } => {
            client.delete_secret(&kind, &name).await?;
            eprintln!("deleted {kind} secret {name}");
        }
    }
    Ok(0)
}

// ---- kiln projects, kiln webhooks ----

fn print_projects(projects: &[kiln_api::Project]) {
    let rows: Vec<[String; 5]> = projects
        .iter()
        .map(|p| {
            [
                p.project_id.clone(),
                p.name.clone(),
                p.git_source.url.clone(),
                if p.branches.is_empty() {
                    "*".into()
                } else {
                    p.branches.join(",")
                },
                p.webhook_url.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "REPOSITORY", "BRANCHES", "WEBHOOK"], &rows);
}

pub async fn projects(
    command: ProjectsCommand,
    server: &ServerArgs,
) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    let some = |v: Vec<String>| Some(v).filter(|v| !v.is_empty());
    match command {
        ProjectsCommand::Create {
            name,
            git,
            context_dir,
            dockerfile,
            builder,
            tags,
            branches,
            tags_pattern,
            paths,
            auto_cancel_superseded,
            poll_interval_secs,
            signing,
            output,
        } => {
            let project = client
                .create_project(&kiln_api::CreateProjectRequest {
                    name,
                    git_source: kiln_api::ProjectGitSource {
                        url: git,
                        context_dir,
                        submodules: None,
                    },
                    dockerfile,
                    builder,
                    tags: some(tags),
                    branches: some(branches),
                    tags_pattern,
                    paths: some(paths),
                    auto_cancel_superseded: Some(auto_cancel_superseded),
                    poll_interval_secs,
                    signing,
                    ..Default::default()
                })
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&project).unwrap()),
                Output::Table => {
                    println!("project {} ({})", project.name, project.project_id);
                    println!("webhook URL:    {}", project.webhook_url);
                    println!(
                        "webhook secret: {} (shown once: set it as the repository webhook's secret)",
                        project.webhook_secret.as_deref().unwrap_or("")
                    );
                }
            }
        }
        ProjectsCommand::List { output } => {
            let list = client.list_projects().await?;
            match output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&list.projects).unwrap())
                }
                Output::Table => print_projects(&list.projects),
            }
        }
        ProjectsCommand::Get { id } => {
            let project = client.get_project(&id).await?;
            println!("{}", serde_json::to_string_pretty(&project).unwrap());
        }
        ProjectsCommand::Delete { id } => {
            client.delete_project(&id).await?;
            eprintln!("deleted project {id}");
        }
        ProjectsCommand::Build { id, reference } => {
            let accepted = client.build_project(&id, reference.as_deref()).await?;
            println!("{}", accepted.build_id);
            eprintln!(
                "build #{} accepted; follow it with `kiln builds logs -f {}`",
                accepted.number, accepted.build_id
            );
        }
    }
    Ok(0)
}

pub async fn webhooks(
    command: WebhooksCommand,
    server: &ServerArgs,
) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        WebhooksCommand::Create {
            url,
            notifier,
            options,
            secrets,
            events,
            project,
        } => {
            let webhook = client
                .create_webhook(&kiln_api::CreateWebhookRequest {
                    url,
                    notifier: notifier.map(|plugin| kiln_api::NotifierTarget {
                        plugin,
                        options: options.into_iter().collect(),
                        secrets,
                    }),
                    events: Some(events).filter(|e| !e.is_empty()),
                    project_id: project,
                })
                .await?;
            println!(
                "webhook {} for {}",
                webhook.webhook_id,
                webhook.events.join(", ")
            );
            if let Some(secret) = &webhook.secret {
                println!(
                    "secret: {secret} (shown once: verify deliveries with it, as Standard Webhooks do)"
                );
            }
        }
        WebhooksCommand::List => {
            let list = client.list_webhooks().await?;
            let rows: Vec<[String; 4]> = list
                .webhooks
                .iter()
                .map(|w| {
                    [
                        w.webhook_id.clone(),
                        w.url.clone().unwrap_or_else(|| {
                            format!(
                                "notifier:{}",
                                w.notifier.as_ref().map_or("", |n| n.plugin.as_str())
                            )
                        }),
                        w.events.join(","),
                        w.project_id.clone().unwrap_or_else(|| "*".into()),
                    ]
                })
                .collect();
            print_table(&["ID", "URL", "EVENTS", "PROJECT"], &rows);
        }
        WebhooksCommand::Delete { id } => {
            client.delete_webhook(&id).await?;
            eprintln!("deleted webhook {id}");
        }
        WebhooksCommand::Deliveries { id } => {
            let list = client.list_deliveries(&id).await?;
            let rows: Vec<[String; 6]> = list
                .deliveries
                .iter()
                .map(|d| {
                    let last = d.last_attempt.as_ref();
                    [
                        d.delivery_id.clone(),
                        d.event_type.clone(),
                        format!("{:?}", d.status).to_lowercase(),
                        d.attempts.to_string(),
                        last.and_then(|a| a.response_code)
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        last.map(|a| a.error.clone()).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "DELIVERY",
                    "EVENT",
                    "STATUS",
                    "ATTEMPTS",
                    "LAST CODE",
                    "LAST ERROR",
                ],
                &rows,
            );
        }
        WebhooksCommand::Redeliver { id, delivery_id } => {
            let delivery = client.redeliver(&id, &delivery_id).await?;
            eprintln!("delivery {} is due again", delivery.delivery_id);
        }
    }
    Ok(0)
}

// ---- kiln plugins ----

pub async fn plugins(
    command: PluginsCommand,
    server: &ServerArgs,
) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    let PluginsCommand::List { output } = command;
    let list = client.list_plugins().await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&list.plugins).unwrap()),
        Output::Table => {
            let rows: Vec<[String; 7]> = list
                .plugins
                .iter()
                .map(|p| {
                    let provides: Vec<String> = (p.kinds.builder.iter())
                        .map(|b| format!("builder {b}"))
                        .chain(p.kinds.context_source.iter().map(|s| format!("source {s}")))
                        .collect();
                    [
                        p.id.clone(),
                        p.version.clone(),
                        p.api.clone(),
                        provides.join(", "),
                        format!(
                            "{} (asked {})",
                            p.granted_permissions.summary(),
                            p.asked_permissions.summary()
                        ),
                        format!("{} MiB, {} s", p.limits.memory_mib, p.limits.time_secs),
                        p.origin.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID", "VERSION", "API", "PROVIDES", "GRANTED", "LIMITS", "ORIGIN",
                ],
                &rows,
            );
            for error in &list.load_errors {
                println!(
                    "not loaded: {} ({}): {}",
                    error.plugin_id.as_deref().unwrap_or("?"),
                    error.origin,
                    error.message
                );
            }
        }
    }
    Ok(0)
}

// ---- kiln plugin ----

pub async fn plugin(command: PluginCommand) -> Result<ExitCode, CommandError> {
    match command {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk_path,
        } => {
            let created = super::scaffold::new_plugin(&dir, &name, kind, sdk_path.as_deref())?;
            println!("created {}", created.display());
            eprintln!(
                "next: cd {} && cargo build --release --target wasm32-wasip2 && kiln plugin check .",
                created.display()
            );
            Ok(0)
        }
        PluginCommand::Check { path, config } => check_plugin(&path, config.as_deref()).await,
        PluginCommand::Push {
            path,
            reference,
            key,
            unsigned: _,
            registry_username,
        } => {
            push_plugin(
                &path,
                &reference,
                key.as_deref(),
                registry_username.as_deref(),
            )
            .await
        }
        PluginCommand::Pull {
            reference,
            dir,
            sha256,
            keys,
            registry_username,
        } => {
            pull_plugin(
                &reference,
                dir.as_deref(),
                sha256.as_deref(),
                &keys,
                registry_username.as_deref(),
            )
            .await
        }
    }
}

/// The registry password `--registry-username` goes with.
fn registry_password() -> String {
    std::env::var("KILN_REGISTRY_PASSWORD").unwrap_or_default()
}

/// `--registry-username` and its password, when a username was given.
fn registry_credentials<'a>(
    username: Option<&'a str>,
    password: &'a str,
) -> Option<kiln_trust::Credentials<'a>> {
    username.map(|username| kiln_trust::Credentials { username, password })
}

/// `kiln plugin push`: publish, sign, and print what an operator configures.
async fn push_plugin(
    path: &std::path::Path,
    reference: &str,
    key: Option<&std::path::Path>,
    username: Option<&str>,
) -> Result<ExitCode, CommandError> {
    let key = key
        .map(|path| kiln_trust::cosign::private_key_from_file(path).map_err(CommandError::Usage))
        .transpose()?;
    let plugin = kiln_trust::artifact::PluginFiles::read(path).map_err(|e| usage!("{e}"))?;
    let password = registry_password();
    let credentials = registry_credentials(username, &password);
    let published =
        kiln_trust::artifact::push_plugin(reference, &plugin, key.as_ref(), credentials)
            .await
            .map_err(|e| usage!("{e}"))?;
    println!("pushed {} ({})", published.reference, published.digest);
    println!("component sha256: {}", published.component_sha256);
    match &published.signature {
        Some(signature) => println!("signature: {} ({})", signature.reference, signature.digest),
        None => println!("signature: none (--unsigned)"),
    }
    println!("\nserve it (kiln serve --config): ");
    println!("[plugins.{}]", plugin.id);
    println!("source = \"{}\"", published.reference);
    println!("sha256 = \"{}\"", published.digest_hex);
    if published.signature.is_some() {
        println!("trusted_keys = [\"publisher.pub\"]   # the public half of your key");
    }
    println!("grant = \"asked\"");
    Ok(0)
}

/// `kiln plugin pull`: fetch, check, and write a plugin directory.
async fn pull_plugin(
    reference: &str,
    dir: Option<&std::path::Path>,
    sha256: Option<&str>,
    key_files: &[std::path::PathBuf],
    username: Option<&str>,
) -> Result<ExitCode, CommandError> {
    let keys = key_files
        .iter()
        .map(|path| kiln_trust::cosign::public_key_from_file(path).map_err(CommandError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    let password = registry_password();
    let credentials = registry_credentials(username, &password);
    let pulled = kiln_trust::artifact::fetch_verified(reference, sha256, &keys, credentials)
        .await
        .map_err(|e| usage!("{e}"))?;
    let id = pulled.id();
    let dir = dir.map_or_else(
        || std::path::PathBuf::from(&id),
        std::path::Path::to_path_buf,
    );
    match &pulled.plugin_toml {
        Some(manifest) => pulled
            .write_dir(&dir, &id, manifest)
            .map_err(|e| usage!("{e}"))?,
        None => {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("{id}.wasm")), &pulled.component)?;
        }
    }
    println!("pulled {} into {}", pulled.pinned_reference, dir.display());
    println!("component sha256: {}", pulled.component_sha256);
    match pulled.signed_by {
        Some(index) => println!("signed by: {}", key_files[index].display()),
        None if sha256.is_some() => println!("trusted by: its sha256 pin (no key given)"),
        None => eprintln!(
            "warning: nothing was checked (no --sha256 and no --key): anyone who can push to the tag chose these bytes"
        ),
    }
    if pulled.plugin_toml.is_none() {
        eprintln!(
            "{}.wasm has no plugin.toml (another tool pushed it): write one beside it, or serve it by reference ([plugins.{id}] source = \"{reference}\")",
            id
        );
    }
    Ok(0)
}

// ---- kiln login, org, token ----

pub async fn login(args: LoginArgs) -> Result<ExitCode, CommandError> {
    let token = match args.token {
        Some(token) => token,
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("token for {}: ", args.server);
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let ca_cert = args.transport.ca_cert.clone();
    let client = client_for(
        &args.server,
        Some(&token),
        ca_cert.as_deref(),
        args.transport.insecure,
    )?;
    // Check before saving: a typo should not be remembered.
    client
        .list_builds(&ListBuilds {
            page_size: Some(1),
            ..Default::default()
        })
        .await?;
    let path = config::save(&config::ClientConfig {
        server: Some(args.server.clone()),
        token: Some(token),
        // Absolute, so later commands find it from any directory.
        ca_cert: ca_cert.map(|path| std::path::absolute(&path).unwrap_or(path)),
    })?;
    eprintln!("logged in to {}; saved to {}", args.server, path.display());
    Ok(0)
}

pub async fn org(command: OrgCommand, server: &ServerArgs) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        OrgCommand::Create { name } => {
            let org = client.create_org(&name).await?;
            println!("created organization {}", org.name);
        }
        OrgCommand::List => {
            for org in client.list_orgs().await?.orgs {
                match org.registry {
                    Some(target) => {
                        println!("{}\t{}/{}", org.name, target.host, target.namespace)
                    }
                    None => println!("{}", org.name),
                }
            }
        }
        OrgCommand::Registry {
            org,
            host,
            namespace,
            reset,
        } => {
            if reset {
                client.reset_org_registry(&org).await?;
            } else if let (Some(host), Some(namespace)) = (host, namespace) {
                client
                    .set_org_registry(&org, &kiln_api::RegistryTarget { host, namespace })
                    .await?;
            }
            let target = client.org_registry(&org).await?;
            println!(
                "{org}: images go to {}/{}/<name>:<tag>",
                target.host, target.namespace
            );
        }
        OrgCommand::Signing { org, on, off } => {
            let setting = match (on, off) {
                (true, _) => client.set_org_signing(&org, true).await?,
                (_, true) => client.set_org_signing(&org, false).await?,
                _ => client.org_signing(&org).await?,
            };
            let state = if setting.enabled {
                "signed, with provenance"
            } else {
                "not signed"
            };
            println!("{org}: images are {state}");
        }
    }
    Ok(0)
}

/// `kiln verify IMAGE`: the signature, the provenance (about this digest;
/// with a server, the build it names is the server's and pushed this
/// digest) and the SBOM's summary. Exits non-zero, saying why, when any
/// check fails.
pub async fn verify(args: VerifyArgs) -> Result<ExitCode, CommandError> {
    use kiln_trust::verify::Verified;
    let password = registry_password();
    let credentials = registry_credentials(args.registry_username.as_deref(), &password);
    let attachments = kiln_trust::verify::fetch(&args.image, credentials).await?;
    let (key, key_source, build) = match &args.key {
        Some(path) => {
            let key =
                kiln_trust::cosign::public_key_from_file(path).map_err(CommandError::Usage)?;
            (key, format!("the key in {}", path.display()), None)
        }
        None => {
            let client = connect(&args.server)?;
            attachments.ensure_signed()?;
            let build_id = attachments.claimed_build_id().ok_or_else(|| {
                usage!(
                    "{} names no Kiln build in a provenance, so no server key applies: pass --key FILE with the key it should be signed with",
                    attachments.image
                )
            })?;
            let build = match client.get_build(&build_id).await {
                Err(ClientError::Refused { status, .. }) if status == hyper::StatusCode::NOT_FOUND => {
                    return Err(usage!(
                        "verification failed: {}'s provenance names build {build_id}, which {} does not have for your organization: the image was built elsewhere (pass --key FILE with its builder's key)",
                        attachments.image,
                        client.server()
                    ))
                }
                answer => answer?,
            };
            let pem = client.org_signing_key(&build.org).await?;
            let key = kiln_trust::cosign::public_key_from_pem(&pem)
                .map_err(|e| usage!("the server's key for {}: {e}", build.org))?;
            let source = format!("organization {}'s key on {}", build.org, client.server());
            (key, source, Some(build))
        }
    };
    let verified: Verified = attachments.verify(&key)?;
    if let Some(build) = &build {
        if verified.provenance.invocation_id != build.build_id
            || build.digest.as_deref() != Some(verified.digest.as_str())
        {
            return Err(usage!(
                "verification failed: {} is not what build {} pushed ({})",
                verified.image,
                build.build_id,
                build.digest.as_deref().unwrap_or("nothing")
            ));
        }
    }
    let sbom = verified.sbom();
    if args.output == Output::Json {
        let provenance = &verified.provenance;
        let report = serde_json::json!({
            "verified": true,
            "image": verified.image,
            "digest": verified.digest,
            "key": key_source,
            "signedIdentity": verified.signed_identity,
            "provenance": {
                "builderId": provenance.builder_id,
                "buildType": provenance.build_type,
                "invocationId": provenance.invocation_id,
                "startedOn": provenance.started_on,
                "finishedOn": provenance.finished_on,
                "dependencies": provenance.dependencies.iter()
                    .map(|(uri, digests)| serde_json::json!({"uri": uri, "digest": digests}))
                    .collect::<Vec<_>>(),
            },
            "build": build.as_ref().map(|b| serde_json::json!({
                "buildId": b.build_id, "org": b.org, "number": b.number, "name": b.name,
            })),
            "sbom": sbom.as_ref().map(|s| serde_json::json!({
                "format": s.format, "packages": s.packages,
                "byEcosystem": s.by_ecosystem.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
        return Ok(0);
    }
    let provenance = &verified.provenance;
    println!("Verified {}", verified.image);
    println!(
        "  signature   cosign, ECDSA P-256, signs {}",
        verified.signed_identity
    );
    println!("  key         {key_source}");
    println!(
        "  provenance  SLSA v1 from {}, build {}{}",
        provenance.builder_id,
        provenance.invocation_id,
        provenance
            .finished_on
            .as_deref()
            .map(|t| format!(", finished {t}"))
            .unwrap_or_default()
    );
    if let Some(build) = &build {
        println!(
            "  built by    this server: #{} of {} (organization {}), which pushed this digest",
            build.number, build.name, build.org
        );
    }
    for (uri, digests) in &provenance.dependencies {
        println!("  input       {uri} {}", digests.join(" "));
    }
    match sbom {
        Some(sbom) => {
            let ecosystems: Vec<String> = sbom
                .by_ecosystem
                .iter()
                .map(|(ecosystem, count)| format!("{ecosystem} {count}"))
                .collect();
            let detail = if ecosystems.is_empty() {
                String::new()
            } else {
                format!(": {}", ecosystems.join(", "))
            };
            println!(
                "  sbom        {}, {} packages{detail}",
                sbom.format, sbom.packages
            )
        }
        None => println!("  sbom        none attached"),
    }
    // Where OCI 1.1 clients find the same attachments (informational: the
    // checks above do not depend on it).
    match kiln_trust::registry::referrers(&verified.image, credentials).await {
        Ok(referrers) => {
            let types: Vec<&str> = referrers
                .iter()
                .filter_map(|r| r["artifactType"].as_str())
                .collect();
            println!(
                "  referrers   {} ({})",
                referrers.len(),
                if types.is_empty() {
                    "none".to_string()
                } else {
                    types.join(", ")
                }
            );
        }
        Err(e) => println!("  referrers   cannot be listed: {e}"),
    }
    Ok(0)
}

pub async fn admin(command: AdminCommand, server: &ServerArgs) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        AdminCommand::Gc { dry_run, list } => {
            let report = client.collect_garbage(dry_run).await?;
            print!("{}", gc_summary(&report, list));
            if !report.errors.is_empty() {
                return Ok(1);
            }
        }
        AdminCommand::Engines => {
            let list = client.list_engines().await?;
            print!("{}", engines_table(&list.engines));
        }
        AdminCommand::Drain { engine } => {
            let engine = client.drain_engine(&engine, true).await?;
            print!("{}", engines_table(&[engine]));
        }
        AdminCommand::Resume { engine } => {
            let engine = client.drain_engine(&engine, false).await?;
            print!("{}", engines_table(&[engine]));
        }
    }
    Ok(0)
}

/// The pool as a table: one engine a line.
fn engines_table(engines: &[kiln_api::Engine]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:>7} {:<26} host",
        "engine", "health", "builds", "platforms"
    );
    for engine in engines {
        let health = match (engine.health, engine.draining) {
            (_, true) => "draining".to_string(),
            (kiln_api::EngineHealth::Healthy, _) => "healthy".into(),
            (kiln_api::EngineHealth::Unhealthy, _) => "unhealthy".into(),
            (kiln_api::EngineHealth::Unknown, _) => "unknown".into(),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:>7} {:<26} {}{}",
            engine.name,
            health,
            format!(
                "{}/{}",
                engine.running_builds.len(),
                engine.max_concurrent_builds
            ),
            engine.platforms.join(","),
            engine.host,
            if engine.tls { " (mutual TLS)" } else { "" }
        );
        if let Some(error) = &engine.health_error {
            let _ = writeln!(out, "  {error}");
        }
    }
    out
}

/// A garbage collection's report as a table (and, with `list`, each item).
fn gc_summary(report: &kiln_api::GcReport, list: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let _ = writeln!(out, "{:<18} {:>8} {:>12}", "kind", verb, "bytes");
    for total in &report.totals {
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>12}",
            total.kind, total.count, total.bytes
        );
    }
    if list {
        for item in &report.items {
            let _ = writeln!(
                out,
                "{} {} ({} bytes): {}",
                item.kind, item.name, item.bytes, item.reason
            );
        }
        if report.items_not_listed > 0 {
            let _ = writeln!(out, "... and {} more", report.items_not_listed);
        }
    }
    for error in &report.errors {
        let _ = writeln!(out, "error: {error}");
    }
    let _ = writeln!(
        out,
        "{} in {} ms{}",
        if report.dry_run { "dry run" } else { "done" },
        report.duration_ms,
        if report.dry_run {
            "; nothing was removed"
        } else {
            ""
        }
    );
    out
}

pub async fn token(command: TokenCommand, server: &ServerArgs) -> Result<ExitCode, CommandError> {
    let client = connect(server)?;
    match command {
        TokenCommand::Create { org } => {
            let new = client.create_token(&org).await?;
            // The token alone on stdout, so scripts can capture it.
            println!("{}", new.token);
            eprintln!(
                "token id {} for organization {org}; the token is shown only now",
                new.token_id
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
    Ok(0)
}

// ---- kiln init ----

/// `kiln plugin check`: load the plugin in the real runtime, call it once,
/// and say what a server with this config would grant.
#[cfg(feature = "server")]
async fn check_plugin(
    path: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<ExitCode, CommandError> {
    let grants = match &config {
        Some(path) => kiln_server::config::FileConfig::load(path)?
            .plugins
            .into_iter()
            .map(|(id, entry)| (id, entry.grant))
            .collect(),
        None => std::collections::BTreeMap::new(),
    };
    // Validate with everything it asks for granted, then say what
    // this config would grant and whether a server would refuse it.
    let no_grants = Default::default();
    let mut runtime = kiln_server::plugins::PluginRuntime::load(
        kiln_server::plugins::first_party(&[], &no_grants),
    )?;
    let asked_all: std::collections::BTreeMap<String, kiln_server::config::PluginGrant> =
        kiln_server::plugins::manifest::Manifest::read_dir(path)
            .ok()
            .map(|m| (m.id, kiln_server::config::PluginGrant::asked()))
            .into_iter()
            .collect();
    let id = match runtime.load_one(path, &asked_all) {
        Ok(id) => id,
        Err(error) => {
            println!("refused: {}", error.message);
            return Ok(1);
        }
    };
    let plugin = runtime.plugin(&id).expect("just loaded");
    // The component links and starts in its sandbox.
    runtime.instantiate(plugin).await?;
    let m = &plugin.manifest;
    let list = |p: &kiln_server::plugins::manifest::Permissions| {
        kiln_server::api::views::permissions(p).describe("nothing")
    };
    println!(
        "ok: plugin {} {} ({:?} world, api {})",
        m.id, m.version, plugin.world, m.api
    );
    println!("description: {}", m.description);
    println!(
        "provides: {}",
        m.kinds
            .builder
            .iter()
            .map(|b| format!("builder {b}"))
            .chain(
                m.kinds
                    .context_source
                    .iter()
                    .map(|s| format!("context source {s}"))
            )
            .chain(
                m.kinds
                    .credential_store
                    .then(|| "credential store".to_string())
            )
            .chain(m.kinds.detector.then(|| "detector".to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("sha256: {}", plugin.sha256);
    if m.sha256.is_none() {
        println!(
            "  (the manifest pins no sha256; add `sha256 = \"{}\"` to refuse any other build)",
            plugin.sha256
        );
    }
    println!("asks for: {}", list(&m.permissions));
    let would = grants
        .get(&m.id)
        .map(|g| m.permissions.intersect(&g.rights(&m.permissions)))
        .unwrap_or_default();
    println!(
        "would be granted: {}{}",
        list(&would),
        if config.is_none() {
            " (no --config given: third-party plugins get nothing by default)"
        } else {
            ""
        }
    );
    for import in &plugin.imports {
        if let Some((permission, false)) = would.needed_for(import) {
            println!(
                "a server with this config would refuse it: it imports {import}, which needs `{permission}`; grant it with [plugins.{}] grant = \"asked\" (or {permission} = [...])",
                m.id
            );
        }
    }
    println!(
        "limits: {} MiB memory, {} s of its own time per call",
        plugin.limits.memory_mib, plugin.limits.time_secs
    );
    Ok(0)
}

#[cfg(not(feature = "server"))]
async fn check_plugin(
    _path: &std::path::Path,
    _config: Option<&std::path::Path>,
) -> Result<ExitCode, CommandError> {
    Err(without_runtime("kiln plugin check"))
}

/// What a client-only `kiln` says for the commands that run plugins.
#[cfg(not(feature = "server"))]
fn without_runtime(command: &str) -> CommandError {
    usage!(
        "`{command}` runs plugins locally, and this kiln was built without the plugin runtime (client only); install the full one with `cargo install kiln` (default features)"
    )
}

/// Run the embedded wizard on `DIR` (read-only, in its sandbox) and write
/// the Dockerfile and `.dockerignore` it would build with.
#[cfg(feature = "server")]
pub async fn init(args: super::InitArgs) -> Result<ExitCode, CommandError> {
    use kiln_server::plugins::bindings::detector::exports::kiln::plugin::detect::DetectRequest;
    use kiln_server::plugins::bindings::types::{KeyValue, PluginError};
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| usage!("cannot open {}: {e}", args.dir.display()))?;
    let mut base_images = Vec::new();
    for spec in &args.base_images {
        let (stack, image) = spec
            .split_once('=')
            .filter(|(s, i)| !s.is_empty() && !i.is_empty())
            .ok_or_else(|| usage!("--base-image {spec:?}: give STACK=IMAGE"))?;
        base_images.push(KeyValue {
            key: stack.to_string(),
            value: image.to_string(),
        });
    }
    let no_grants = Default::default();
    let runtime = kiln_server::plugins::PluginRuntime::load(kiln_server::plugins::LoadOptions {
        cache_dir: dirs_cache().map(|d| d.join("kiln/plugin-cache")),
        ..kiln_server::plugins::first_party(&[], &no_grants)
    })?;
    let wizard = runtime
        .detector()
        .ok_or_else(|| usage!("this kiln has no detector plugin"))?;
    let request = DetectRequest {
        path: String::new(),
        monorepo: true,
        base_images,
    };
    let projects = runtime
        .detect(
            wizard,
            kiln_server::plugins::Capabilities::for_plugin(wizard),
            &dir,
            &request,
        )
        .await?
        .map_err(|e| match e {
            PluginError::InvalidInput(m) | PluginError::ContextInvalid(m) => CommandError::Usage(m),
            other => CommandError::Usage(format!("the wizard failed: {other:?}")),
        })?;
    let root = projects.iter().find(|p| p.path.is_empty());
    for project in projects.iter().filter(|p| !p.path.is_empty()) {
        println!(
            "sub-project {}: {}{} — build it with contextDir {:?}",
            project.path,
            project.stack,
            if project.has_dockerfile {
                " (has a Dockerfile)"
            } else {
                ""
            },
            project.path
        );
    }
    let Some(root) = root else {
        eprintln!(
            "kiln init: nothing the wizard recognizes in {}{}",
            dir.display(),
            if projects.is_empty() {
                ""
            } else {
                " itself (see the sub-projects above; run kiln init in one of them)"
            }
        );
        return Ok(1);
    };
    println!(
        "detected {}{}:",
        root.stack,
        if root.tool.is_empty() {
            String::new()
        } else {
            format!(" ({})", root.tool)
        }
    );
    for reason in &root.reasons {
        println!("  - {reason}");
    }
    if root.has_dockerfile {
        println!(
            "{} already has a Dockerfile; nothing to write (remove it to have one generated)",
            dir.display()
        );
        return Ok(0);
    }
    let files = [
        ("Dockerfile", &root.dockerfile),
        (".dockerignore", &root.dockerignore),
    ];
    if args.dry_run {
        for (name, text) in files {
            println!("--- {name}\n{text}");
        }
        return Ok(0);
    }
    let existing: Vec<&str> = files
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| dir.join(name).exists())
        .collect();
    if !existing.is_empty() && !args.force {
        eprintln!(
            "kiln init: {} already exist(s) in {}; nothing written (use --force to overwrite, or --dry-run to see what would be written)",
            existing.join(" and "),
            dir.display()
        );
        return Ok(1);
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(|e| usage!("cannot write {name}: {e}"))?;
        println!("wrote {}", dir.join(name).display());
    }
    Ok(0)
}

/// `$XDG_CACHE_HOME` or `~/.cache`.
#[cfg(feature = "server")]
fn dirs_cache() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
}

#[cfg(not(feature = "server"))]
pub async fn init(_args: super::InitArgs) -> Result<ExitCode, CommandError> {
    Err(without_runtime("kiln init"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_split_like_docker() {
        assert_eq!(
            split_tag("hello:v1").unwrap(),
            ("hello".into(), "v1".into())
        );
        assert_eq!(
            split_tag("team/api").unwrap(),
            ("team/api".into(), "latest".into())
        );
        assert!(split_tag("registry.example.com:5000/x:1").is_err());
    }

    #[test]
    fn git_specs_map_to_a_git_source() {
        // As the server reads them: absent fields are left out.
        let wire = |spec: &str| serde_json::to_value(git_source(spec)).unwrap();
        assert_eq!(
            wire("https://example.com/r.git#v1.2:services/api"),
            json!({"url": "https://example.com/r.git", "reference": "v1.2", "contextDir": "services/api"})
        );
        assert_eq!(wire("git://h/r"), json!({"url": "git://h/r"}));
    }

    #[test]
    fn bare_build_arg_names_come_from_the_environment() {
        std::env::set_var("KILN_TEST_BUILD_ARG", "from-env");
        let args = build_args(&[
            "A=1".into(),
            "KILN_TEST_BUILD_ARG".into(),
            "KILN_TEST_UNSET_ARG".into(),
        ]);
        assert_eq!(args["A"], "1");
        assert_eq!(args["KILN_TEST_BUILD_ARG"], "from-env");
        assert!(!args.contains_key("KILN_TEST_UNSET_ARG"));
    }
}
