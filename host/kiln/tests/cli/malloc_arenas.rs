//! Issue 12: the server's resident size grew ~3 MiB with every 200-build
//! burst though its live heap did not: glibc's arenas (eight per core by
//! default) each kept pages for the few allocations a burst left alive in
//! them. `kiln serve` limits the arenas before its runtime starts threads.

use std::time::Duration;

use kiln_tests::kiln_server::memory::arena_limit;
use kiln_tests::*;

/// glibc's size of one arena heap: each is mapped at a multiple of it.
const ARENA_HEAP_BYTES: u64 = 64 << 20;

/// Arena heaps in `pid`'s memory map: anonymous read-write mappings that
/// start on a 64 MiB boundary and end within it (the rest of the heap is
/// reserved, `---p`, until the arena grows into it). Thread stacks and
/// wasmtime's reservations are larger or not aligned so.
fn arena_heaps(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (range, perms, inode) = (fields[0], fields[1], fields[4]);
            let anonymous = inode == "0" && fields.len() == 5;
            let (start, end) = range.split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            anonymous
                && perms == "rw-p"
                && start % ARENA_HEAP_BYTES == 0
                && end - start <= ARENA_HEAP_BYTES
        })
        .count()
}

/// Start a server (with `MALLOC_ARENA_MAX` set to `malloc_arena_max`, if
/// given), make its threads allocate (two builds at once, fifty requests at
/// once), and count its arena heaps.
async fn arena_heaps_after_work(malloc_arena_max: Option<&str>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = malloc_arena_max
        .map(|max| ("MALLOC_ARENA_MAX", max))
        .into_iter()
        .collect();
    let server = KilnProcess::spawn_with_env(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        dir.path(),
        &["--max-concurrent-builds", "2"],
        &env,
    );
    let mut builds = Vec::new();
    for _ in 0..2 {
        builds.push(
            server
                .create_build(&hello_request(&unique_name("arenas")))
                .await,
        );
    }
    let lists = (0..50).map(|_| server.get("/v1/builds"));
    futures_util::future::join_all(lists).await;
    for build in &builds {
        server.wait_succeeded(build, Duration::from_secs(120)).await;
    }
    arena_heaps(server.pid())
}

#[tokio::test]
async fn issue_12_the_server_keeps_its_malloc_arenas_few() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let limited = arena_heaps_after_work(None).await;
    // The main arena is the program's break heap, not one of these.
    assert!(
        limited < arena_limit(cores),
        "{limited} arena heaps, over the limit of {} arenas for {cores} cores",
        arena_limit(cores)
    );
    // The count is a real measure: an operator's MALLOC_ARENA_MAX stands,
    // and with a generous one the same work makes more arenas.
    let unlimited = arena_heaps_after_work(Some("64")).await;
    assert!(
        unlimited > limited,
        "MALLOC_ARENA_MAX=64: {unlimited} arena heaps, limited: {limited}"
    );
}
