//! Handing freed memory back to the OS once the server goes quiet.
//!
//! glibc keeps what a burst freed in its arenas (every runtime and blocking
//! thread gets one), so without a trim the server's resident size stays
//! where its busiest moment left it: 200 builds with 500 log followers left
//! ~10 MiB more behind each time, though the live heap was the same
//! (heaptrack). Trimming as each build ended missed what the followers'
//! connections freed after it; trimming once nothing has happened for a
//! moment catches both, and never runs in the middle of a burst.
//!
//! The allocator is process-wide, and so is this: anything that frees a
//! lot when it ends calls [`note_activity`].
//!
//! A trim returns only whole free pages, and glibc's default of eight
//! arenas per core scatters what a burst leaves alive over many of them:
//! the pages each arena keeps for a few live allocations added up to
//! ~19 MiB over six 200-build bursts (live heap +3 MiB, heaptrack), so the
//! binary calls [`limit_arenas`] before its runtime starts threads.
//! (mimalloc instead: flat, but twice the resident size from the start.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long nothing must happen before a trim.
const QUIET: Duration = Duration::from_millis(1000);

/// At most this many malloc arenas for `cores` cores: two per core, from
/// 4 to 16. Measured on 2 cores over six 200-build bursts (RSS after the
/// first and the last, accept p99): glibc's 16 arenas 89 -> 108 MiB and
/// 31-46 ms; 4 arenas 82 -> 96 MiB and 24-39 ms; 2 arenas 82 -> 90 MiB but
/// 23-57 ms (one run each: 4 met both goals, 2 missed the latency one).
pub fn arena_limit(cores: usize) -> usize {
    (2 * cores).clamp(4, 16)
}

/// Limit glibc's arenas to [`arena_limit`] for this machine's cores.
/// Call before any thread starts: a thread takes an arena of its own, up
/// to the limit, at its first allocation. `MALLOC_ARENA_MAX` in the
/// environment, the operator's choice, stands.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let limit = arena_limit(cores) as libc::c_int;
        // SAFETY: mallopt only sets a glibc tunable; called before other
        // threads exist, and glibc takes its own lock for it anyway.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, limit);
        }
    }
}

/// Something ended since the last trim.
static DIRTY: AtomicBool = AtomicBool::new(false);
/// When, in milliseconds since [`epoch`].
static LAST_ACTIVITY_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// A build or a connection ended: what it held is free now.
pub fn note_activity() {
    LAST_ACTIVITY_MS.store(now_ms(), Ordering::Relaxed);
    DIRTY.store(true, Ordering::Relaxed);
}

/// Trim once the server has been quiet for [`QUIET`] after something
/// ended; until `stop`.
pub async fn return_when_quiet(stop: CancellationToken) {
    let mut tick = tokio::time::interval(QUIET / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let quiet_for = now_ms().saturating_sub(LAST_ACTIVITY_MS.load(Ordering::Relaxed));
        if quiet_for >= QUIET.as_millis() as u64 && DIRTY.swap(false, Ordering::Relaxed) {
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks;
    // it has no preconditions and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
