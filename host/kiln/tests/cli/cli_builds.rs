//! `kiln build` and friends, driven as a user would: the real binary, no
//! terminal (so the output is the plain, stable kind), against a real server.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kiln_tests::*;

struct Cli<'a> {
    server: &'a KilnProcess,
    home: tempfile::TempDir,
}

impl<'a> Cli<'a> {
    fn new(server: &'a KilnProcess) -> Self {
        Cli {
            server,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Run `kiln ARGS` with the server and token in the environment.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_SERVER", self.server.server_url())
            .env("KILN_TOKEN", &self.server.token)
            .env("XDG_CONFIG_HOME", self.home.path())
            .envs(env.iter().copied())
            .output()
            .expect("run kiln")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(root: &Path, path: &str, contents: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn kiln_build_packs_builds_follows_and_reports_like_docker_build() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let cli = Cli::new(&server);
    let hello = workspace().join("examples/hello");
    let name = unique_name("cli");

    // `--build-arg GREETING` alone takes the value from the environment.
    let out = cli.run_with_env(
        &[
            "build",
            hello.to_str().unwrap(),
            "-t",
            &format!("{name}:v1"),
            "-t",
            &format!("{name}:stable"),
            "--build-arg",
            "GREETING",
        ],
        &[("GREETING", "Greetings from the CLI")],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        !stdout.contains('\x1b'),
        "no colour without a terminal: {stdout}"
    );
    assert!(
        stdout.contains("[4/4] RUN chmod"),
        "the log is followed: {stdout}"
    );
    let image = format!("{REGISTRY}/default/{name}:v1");
    assert!(stdout.contains(&format!("image:  {image}")), "{stdout}");
    assert!(
        stdout.contains(&format!("image:  {REGISTRY}/default/{name}:stable")),
        "{stdout}"
    );
    assert!(stdout.contains("digest: sha256:"), "{stdout}");
    assert!(
        stdout.contains("steps cached"),
        "metrics are printed: {stdout}"
    );
    assert_eq!(run_image(&image).await.trim(), "Greetings from the CLI!");

    // --detach prints the id alone and returns.
    let out = cli.run(&[
        "build",
        hello.to_str().unwrap(),
        "-t",
        &format!("{name}:v2"),
        "--detach",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let build_id = text(&out.stdout).trim().to_string();
    assert_eq!(build_id.len(), 36, "a build id: {build_id:?}");
    let record = server
        .wait_finished(&build_id, Duration::from_secs(120))
        .await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED");

    // The other commands see the builds.
    let out = cli.run(&["builds", "list", "--output", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["buildId"], build_id.as_str(), "newest first");
    let out = cli.run(&["builds", "list", "--name", &name, "--status", "succeeded"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("BUILD ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    let out = cli.run(&["builds", "get", &build_id, "-o", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["imageRefs"][0], format!("{REGISTRY}/default/{name}:v2"));
    let out = cli.run(&["builds", "logs", &build_id]);
    assert!(
        text(&out.stdout).contains("build succeeded"),
        "{}",
        text(&out.stdout)
    );
    let out = cli.run(&["builds", "cancel", &build_id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already finished"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_failing_build_exits_non_zero_with_the_reason_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let cli = Cli::new(&server);
    let context = tempfile::tempdir().unwrap();
    write(
        context.path(),
        "Dockerfile",
        format!("FROM {REGISTRY}/base/busybox:1\nRUN echo about-to-fail && exit 4\n").as_bytes(),
    );
    let out = cli.run(&[
        "build",
        context.path().to_str().unwrap(),
        "-t",
        &unique_name("clifail"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("about-to-fail"), "{stdout}");
    assert!(stdout.contains("build failed (RUN_FAILED)"), "{stdout}");
    assert!(
        stdout.contains("hint: A RUN step exited with code 4"),
        "{stdout}"
    );
}

/// `kiln build` sends an `Idempotency-Key` (so its own retries of a
/// broken connection never make a second build), and a 202 means stored:
/// killed right after answering, the server had kept the build and the
/// key's answer (both used to sit unflushed for up to 200 ms).
#[tokio::test]
async fn issue_12_kiln_build_sends_an_idempotency_key_and_an_accepted_build_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let cli = Cli::new(&server);
    let context = tempfile::tempdir().unwrap();
    write(
        context.path(),
        "Dockerfile",
        format!("FROM {REGISTRY}/base/busybox:1\n").as_bytes(),
    );
    let tag = unique_name("clikey");
    let out = cli.run(&[
        "build",
        context.path().to_str().unwrap(),
        "-t",
        &tag,
        "--detach",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.kill9();
    assert_eq!(
        stored_builds_and_answers(dir.path()),
        (1, 1),
        "the build, and one answer kept for its key"
    );
}

#[tokio::test]
async fn packing_sends_exactly_what_dockerignore_leaves_and_big_contexts_are_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let cli = Cli::new(&server);
    let context = tempfile::tempdir().unwrap();
    let root = context.path();
    write(
        root,
        "Dockerfile",
        format!(
            "FROM {REGISTRY}/base/busybox:1\nCOPY . /ctx\nRUN cd /ctx && find . -type f | sed 's|^./|seen:|'\n"
        )
        .as_bytes(),
    );
    write(root, ".dockerignore", b"*.log\ntmp/\n!tmp/keep.txt\n");
    write(root, "src/main.c", b"int main(){}");
    write(root, "debug.log", b"noise");
    write(root, "tmp/cache.bin", b"noise");
    write(root, "tmp/keep.txt", b"kept");
    write(root, ".git/HEAD", b"ref: refs/heads/main");
    let seen = |stdout: &str| {
        let mut seen: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter_map(|w| w.strip_prefix("seen:"))
            .map(str::to_string)
            .collect();
        seen.sort();
        seen
    };
    let out = cli.run(&[
        "build",
        root.to_str().unwrap(),
        "-t",
        &unique_name("packed"),
        "--no-cache",
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        seen(&text(&out.stdout)),
        vec![".dockerignore", "Dockerfile", "src/main.c", "tmp/keep.txt"]
    );
    assert!(
        text(&out.stderr).contains("packed 4 files"),
        "{}",
        text(&out.stderr)
    );

    // Over 4 MiB packed: uploaded, not inline.
    let mut noise = vec![0u8; 5 << 20];
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for byte in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    write(root, "assets/noise.bin", &noise);
    let out = cli.run(&[
        "build",
        root.to_str().unwrap(),
        "-t",
        &unique_name("uploaded"),
        "--detach",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("uploaded the context"),
        "{}",
        text(&out.stderr)
    );
    let build_id = text(&out.stdout).trim().to_string();
    let record = server
        .wait_finished(&build_id, Duration::from_secs(120))
        .await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    assert_eq!(record["source"]["kind"], "upload");
}

#[tokio::test]
async fn login_saves_a_private_config_that_later_commands_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let home = tempfile::tempdir().unwrap();
    let kiln = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env_remove("KILN_SERVER")
            .env_remove("KILN_TOKEN")
            .env("XDG_CONFIG_HOME", home.path())
            .output()
            .unwrap()
    };
    let bad = kiln(&[
        "login",
        "--server",
        server.server_url(),
        "--token",
        "kiln_wrong",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("rejected the token"),
        "{}",
        text(&bad.stderr)
    );
    assert!(
        !home.path().join("kiln/config.toml").exists(),
        "a bad token is not saved"
    );

    let good = kiln(&[
        "login",
        "--server",
        server.server_url(),
        "--token",
        &server.token,
    ]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    let config = home.path().join("kiln/config.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let listed = kiln(&["builds", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).starts_with("BUILD ID"));

    let completions = kiln(&["completions", "bash"]);
    assert!(
        text(&completions.stdout).contains("_kiln()"),
        "a bash completion function"
    );
}

#[tokio::test]
async fn secrets_are_set_from_stdin_listed_masked_and_deleted() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["secrets", "set", "build", "NPM_TOKEN"])
        .env("KILN_SERVER", server.server_url())
        .env("KILN_TOKEN", &server.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"npm-secret-value\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cli = Cli::new(&server);
    let listed = cli.run(&["secrets", "list"]);
    let table = text(&listed.stdout);
    assert!(
        table.contains("build") && table.contains("NPM_TOKEN") && table.contains("***"),
        "{table}"
    );
    assert!(!table.contains("npm-secret-value"));
    let deleted = cli.run(&["secrets", "delete", "build", "NPM_TOKEN"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(!text(&cli.run(&["secrets", "list"]).stdout).contains("NPM_TOKEN"));
}

#[tokio::test]
async fn ctrl_c_with_cancel_on_interrupt_cancels_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let context = tempfile::tempdir().unwrap();
    let marker = unique_name("interrupt-marker");
    write(
        context.path(),
        "Dockerfile",
        format!("FROM {REGISTRY}/base/busybox:1\nRUN echo {marker} && sleep 300 && echo {marker}-done\n").as_bytes(),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "build",
            context.path().to_str().unwrap(),
            "-t",
            &unique_name("interrupted"),
            "--no-cache",
            "--cancel-on-interrupt",
        ])
        .env("KILN_SERVER", server.server_url())
        .env("KILN_TOKEN", &server.token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the RUN step, as a user would wait before pressing Ctrl-C.
    let started = std::time::Instant::now();
    let running = |marker: &str| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
                && e.file_name() != std::ffi::OsString::from(child.id().to_string())
        })
    };
    while !running(&format!("echo {marker} &&")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the RUN step never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cancelling build"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("BUILD_STATUS_CANCELLED"),
        "{}",
        text(&out.stdout)
    );
    let listed = server.get("/v1/builds?pageSize=1").await.json();
    assert_eq!(listed["builds"][0]["status"], "BUILD_STATUS_CANCELLED");
}

#[tokio::test]
async fn kiln_build_git_builds_a_branch_subdirectory_and_lists_by_branch() {
    use kiln_tests::git::{GitDaemon, RepoRoot};
    let root = RepoRoot::new();
    let repo = root.repo("cli-app");
    let name = unique_name("cli-git");
    repo.write("README", "root of the repository\n");
    repo.commit("root");
    repo.run(&["checkout", "-q", "-b", "release"]);
    repo.write(
        "app/Dockerfile",
        "FROM local/busybox:1\nCOPY note.txt /note.txt\nRUN cat /note.txt\n",
    );
    repo.write(
        "app/note.txt",
        &format!("from the release branch ({name})\n"),
    );
    let commit = repo.commit("release");
    let daemon = GitDaemon::start(&root).await;
    let dir = tempfile::tempdir().unwrap();
    // The daemon listens on loopback, which tenants may not reach unless
    // the operator allows it.
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        dir.path(),
        &["--allow-private-network", "127.0.0.0/8"],
    );
    let cli = Cli::new(&server);
    let spec = format!("{}#release:app", daemon.url("cli-app"));
    let out = cli.run(&["build", "--git", &spec, "-t", &name, "--no-cache"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("from the release branch"), "{stdout}");
    assert!(
        stdout.contains(&commit),
        "the resolved commit is shown: {stdout}"
    );
    let out = cli.run(&["builds", "list", "--branch", "release", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    let out = cli.run(&["builds", "list", "--branch", "main", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().unwrap().is_empty(), "{listed:#}");
}

#[test]
fn kiln_init_writes_the_wizards_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(workspace().join("examples/wizard/python-pip"))
        .arg(&app)
        .status()
        .unwrap();
    assert!(copied.success());
    let cache = tempfile::tempdir().unwrap();
    let kiln = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .unwrap()
    };
    std::fs::write(app.join(".dockerignore"), "mine\n").unwrap();
    let refused = kiln(&["init", app.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("--force"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!app.join("Dockerfile").exists());
    assert_eq!(
        std::fs::read_to_string(app.join(".dockerignore")).unwrap(),
        "mine\n"
    );

    let out = kiln(&[
        "init",
        app.to_str().unwrap(),
        "--force",
        "--base-image",
        "python=mirror.example.com/python:3.12",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("detected python (pip)"), "{stdout}");
    assert!(stdout.contains("requirements.txt → pip"), "{stdout}");
    let dockerfile = std::fs::read_to_string(app.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("FROM mirror.example.com/python:3.12"),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("gunicorn"), "{dockerfile}");
    assert!(std::fs::read_to_string(app.join(".dockerignore"))
        .unwrap()
        .contains("__pycache__"));

    let monorepo = kiln(&[
        "init",
        workspace()
            .join("examples/wizard/monorepo-mixed")
            .to_str()
            .unwrap(),
        "--dry-run",
    ]);
    let stdout = text(&monorepo.stdout);
    assert!(
        stdout.contains("sub-project services/worker: go"),
        "{stdout}"
    );
    assert!(stdout.contains("sub-project tools/cli: rust"), "{stdout}");
}

/// Issue 14: `kiln projects` and `kiln webhooks` create, list and delete
/// what the API does, printing each secret once.
#[tokio::test]
async fn issue_14_projects_and_webhooks_are_managed_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let cli = Cli::new(&server);
    let name = unique_name("cli-project");
    let created = cli.run(&[
        "projects",
        "create",
        &name,
        "--git",
        "https://git.example.com/acme/app.git",
        "--tag",
        "{sha7}",
        "--branch",
        "main",
        "-o",
        "json",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let project: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = project["projectId"].as_str().unwrap();
    assert!(project["webhookSecret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    assert_eq!(project["tags"], serde_json::json!(["{sha7}"]));
    let listed = text(&cli.run(&["projects", "list"]).stdout);
    assert!(listed.contains(id) && listed.contains(&name), "{listed}");
    assert!(
        !listed.contains("whsec_"),
        "the secret is shown once: {listed}"
    );
    let refused = cli.run(&["projects", "create", &name, "--git", "not a url"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("gitSource.url"),
        "{}",
        text(&refused.stderr)
    );

    let hook = cli.run(&[
        "webhooks",
        "create",
        "https://deploy.example.com/kiln",
        "--event",
        "build.succeeded",
        "--project",
        id,
    ]);
    assert!(hook.status.success(), "{}", text(&hook.stderr));
    let said = text(&hook.stdout);
    assert!(said.contains("secret: whsec_"), "{said}");
    let webhook_id = said.split_whitespace().nth(1).unwrap().to_string();
    let listed = text(&cli.run(&["webhooks", "list"]).stdout);
    assert!(
        listed.contains(&webhook_id) && listed.contains("build.succeeded"),
        "{listed}"
    );
    let deliveries = cli.run(&["webhooks", "deliveries", &webhook_id]);
    assert!(deliveries.status.success(), "{}", text(&deliveries.stderr));
    assert!(cli
        .run(&["webhooks", "delete", &webhook_id])
        .status
        .success());
    assert!(cli.run(&["projects", "delete", id]).status.success());
    let gone = cli.run(&["projects", "get", id]);
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("not found"),
        "{}",
        text(&gone.stderr)
    );
}
