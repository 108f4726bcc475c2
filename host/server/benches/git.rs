//! Git checkouts: Kiln's gix fetch (shallow, into a per-organization mirror,
//! then the tree written out as a build context) against `git clone
//! --depth 1` of the same repository, both over `git daemon` on loopback.
//!
//! The repository is made from crate sources in the local cargo registry:
//! one commit per crate, a few hundred commits and several thousand files.
//! It is kept under `target/bench-git/` between runs.
//!
//! Cases, each the median of several runs:
//! * cold: an empty mirror (Kiln) / no clone (git);
//! * warm after one new commit: Kiln's mirror from the cold run and the
//!   context the last build kept (only what changed is written); for git,
//!   `fetch --depth 1` + `checkout` in the clone from before (which also
//!   writes only what changed), and a fresh `clone --depth 1` (what a tool
//!   without a mirror does);
//! * the same after a build that kept no context (the whole tree written);
//! * the same commit again, with the kept context: the handshake and a
//!   stat of every file;
//! * keeping a context when its build ends (moving it aside).
//!
//! `cargo bench -p kiln-server --bench git` (needs git; scripts/setup.sh
//! installs it).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_server::git::{CheckoutRequest, CredentialLookup, GitFetcher, Limits};
use kiln_tests::git::{git, GitDaemon, RepoRoot, WorkRepo};

const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                count += 1;
            }
        }
    }
    count
}

/// One commit per crate source directory, up to `crates` crates, skipping
/// very large ones.
fn make_repo(repo: &WorkRepo, crates: usize) {
    let registry = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"))
        .join("registry/src");
    // The index with the most crate sources (a local overlay registry
    // beside crates.io holds only a few).
    let index = std::fs::read_dir(&registry)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::read_dir(p).map_or(0, |d| d.count()))
        .expect("a cargo registry with sources");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&index)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    sources.sort();
    let mut made = 0;
    for source in sources {
        if made == crates {
            break;
        }
        let files = count_files(&source);
        if files == 0 || files > 150 {
            continue;
        }
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(&source)
            .arg(repo.path.join("crates"))
            .status()
            .unwrap();
        assert!(status.success());
        // Cargo's registry sources carry .gitignore files; keep every file.
        let name = source.file_name().unwrap().to_string_lossy().to_string();
        git(&repo.path, &["add", "-A", "-f", "crates"]);
        git(&repo.path, &["commit", "-q", "-m", &format!("add {name}")]);
        made += 1;
    }
}

/// A build's checkout into a fresh `dest`: (time, files reused, the time
/// keeping the context took when `keep`).
fn kiln_checkout(
    fetcher: &GitFetcher,
    url: &str,
    dest: &Path,
    keep: bool,
) -> (Duration, u64, Duration) {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).unwrap();
    let request = CheckoutRequest {
        url: url.to_string(),
        reference: "main".into(),
        context_dir: String::new(),
        submodules: false,
    };
    let none: CredentialLookup = Arc::new(|_| None);
    let started = Instant::now();
    let checkout = fetcher
        .checkout(
            "bench",
            &request,
            &|_| Ok(()),
            &none,
            dest,
            &Limits {
                max_bytes: 8 << 30,
                max_entries: 1_000_000,
            },
            &AtomicBool::new(false),
        )
        .expect("checkout");
    let took = started.elapsed();
    let started = Instant::now();
    if keep {
        checkout
            .kept
            .expect("a context to keep")
            .keep(dest)
            .unwrap();
    }
    (took, checkout.reused_files, started.elapsed())
}

fn git_clone(url: &str, dest: &Path) -> Duration {
    let _ = std::fs::remove_dir_all(dest);
    let started = Instant::now();
    git(
        dest.parent().unwrap(),
        &["clone", "-q", "--depth", "1", url, dest.to_str().unwrap()],
    );
    started.elapsed()
}

fn git_fetch_checkout(clone: &Path) -> Duration {
    let started = Instant::now();
    git(clone, &["fetch", "-q", "--depth", "1", "origin", "main"]);
    git(clone, &["checkout", "-q", "--detach", "FETCH_HEAD"]);
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-git");
    let root_dir = target.join("repos");
    let repo_path = root_dir.join("crates-repo");
    if !repo_path.join(".git").exists() {
        eprintln!("making the benchmark repository (once)...");
        let _ = std::fs::remove_dir_all(&root_dir);
        std::fs::create_dir_all(&repo_path).unwrap();
        git(&repo_path, &["init", "-q", "-b", "main"]);
        make_repo(
            &WorkRepo {
                path: repo_path.clone(),
            },
            400,
        );
    }
    let repo = WorkRepo {
        path: repo_path.clone(),
    };
    let root = RepoRoot::at(&root_dir);
    let daemon = GitDaemon::start(&root).await;
    let url = daemon.url("crates-repo");
    let files = count_files(&repo_path);
    let commits = git(&repo_path, &["rev-list", "--count", "HEAD"]);
    let size = git(&repo_path, &["count-objects", "-vH"]);
    let size = size
        .lines()
        .find_map(|l| l.strip_prefix("size-pack: "))
        .unwrap_or("?")
        .to_string();

    let work = tempfile::tempdir().unwrap();
    let mut cold_kiln = Vec::new();
    let mut cold_git = Vec::new();
    let mut warm_kept = Vec::new();
    let mut warm_whole = Vec::new();
    let mut warm_clone = Vec::new();
    let mut warm_fetch = Vec::new();
    let mut same_again = Vec::new();
    let mut keeps = Vec::new();
    let mut reused = 0;
    for run in 0..RUNS {
        let data = work.path().join(format!("data-{run}"));
        // The repository is served on loopback.
        let loopback = kiln_server::net::NetworkPolicy::allowing(["127.0.0.0/8".parse().unwrap()]);
        let fetcher = GitFetcher::new(&data, loopback);
        let kiln_dest = work.path().join("kiln-context");
        let git_dest = work.path().join(format!("git-clone-{run}"));
        let new_commit = |what: &str| {
            repo.write("crates/bench-change.txt", &format!("{what} {run}\n"));
            git(&repo_path, &["add", "-A", "-f"]);
            git(
                &repo_path,
                &["commit", "-q", "-m", &format!("{what} {run}")],
            );
        };
        // Cold, alternating which goes first; the build keeps its context.
        if run % 2 == 0 {
            cold_kiln.push(kiln_checkout(&fetcher, &url, &kiln_dest, true).0);
            cold_git.push(git_clone(&url, &git_dest));
        } else {
            cold_git.push(git_clone(&url, &git_dest));
            cold_kiln.push(kiln_checkout(&fetcher, &url, &kiln_dest, true).0);
        }
        // One new commit, then warm: Kiln with the kept context, git in
        // its clone.
        new_commit("change");
        let (took, kept_files, keep) = kiln_checkout(&fetcher, &url, &kiln_dest, true);
        warm_kept.push(took);
        keeps.push(keep);
        reused = kept_files;
        warm_fetch.push(git_fetch_checkout(&git_dest));
        warm_clone.push(git_clone(&url, &work.path().join("git-fresh")));
        // Nothing new: the handshake and checking the kept files. This
        // build keeps nothing...
        same_again.push(kiln_checkout(&fetcher, &url, &kiln_dest, false).0);
        // ... so the next one writes its whole tree.
        new_commit("again");
        warm_whole.push(kiln_checkout(&fetcher, &url, &kiln_dest, false).0);
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&git_dest);
    }
    let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
    println!(
        "repository: {files} files, {commits} commits, {size} packed; git daemon on loopback; median of {RUNS}\n"
    );
    println!("| case | Kiln (gix fetch + export) | git | Kiln / git |");
    println!("|---|---|---|---|");
    let (ck, cg) = (median(cold_kiln), median(cold_git));
    println!(
        "| cold (empty mirror / `git clone --depth 1`) | {} | {} | {} |",
        ms(ck),
        ms(cg),
        ratio(ck, cg)
    );
    let (wk, wc, wf) = (median(warm_kept), median(warm_clone), median(warm_fetch));
    println!(
        "| one new commit, warm mirror + kept context ({reused} files unchanged) / `git fetch --depth 1` + `checkout` in a clone | {} | {} | {} |",
        ms(wk),
        ms(wf),
        ratio(wk, wf)
    );
    println!(
        "| one new commit, warm mirror + kept context / fresh `git clone --depth 1` | {} | {} | {} |",
        ms(wk),
        ms(wc),
        ratio(wk, wc)
    );
    let ww = median(warm_whole);
    println!(
        "| one new commit, warm mirror, no kept context (the whole tree written) / `git fetch` + `checkout` | {} | {} | {} |",
        ms(ww),
        ms(wf),
        ratio(ww, wf)
    );
    println!(
        "| the same commit again (Kiln: handshake + a stat of every kept file) | {} | | |",
        ms(median(same_again))
    );
    println!(
        "| keeping a context when its build ends (Kiln) | {} | | |",
        ms(median(keeps))
    );
}
