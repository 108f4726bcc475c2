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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long nothing must happen before a trim.
const QUIET: Duration = Duration::from_millis(1000);

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
