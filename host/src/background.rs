//! Background work: the tokio runtime that stream readers, their handlers,
//! the delayed-event mover and the trimmer run on.
//!
//! Its threads have a lower scheduling priority than the gateway's: events
//! are work nobody is waiting on, so under load they take the CPU requests
//! leave over instead of half of it, and on an idle machine they have every
//! core. Nothing is lost by waiting: an event not yet handled is still
//! pending in Redis. Each runtime has its own Redis connection (see
//! `store::Store::conn`), so a reply never wakes a thread of the other one.

use std::cell::Cell;

use anyhow::Result;

/// Nice value of the background threads: the kernel gives a busy nice-10
/// thread about a tenth of the CPU of a busy nice-0 one, and all of an idle
/// machine.
const NICE: libc::c_int = 10;

thread_local! {
    static ON_BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// The background runtime: one worker per core.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("wharf-events")
        .on_thread_start(|| {
            ON_BACKGROUND.set(true);
            lower_priority();
        })
        .enable_all()
        .build()?)
}

/// True on a thread of the background runtime.
pub fn is_current() -> bool {
    ON_BACKGROUND.get()
}

/// Raises the calling thread's nice value (on Linux, nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain libc calls about the calling thread.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}
