//! Background work: the tokio runtime that stream readers, their handlers,
//! the delayed-event mover, the outbox publisher and the trimmer run on.
//!
//! Its threads have a lower scheduling priority than the gateway's: events
//! are work nobody is waiting on, so under load they take the CPU requests
//! leave over instead of half of it, and on an idle machine they have every
//! core. Nothing is lost by waiting: an event not yet handled is still
//! pending in Redis. Each runtime has its own Redis connection (see
//! `store::Store::conn`), so a reply never wakes a thread of the other one.

use std::cell::Cell;

use anyhow::Result;

/// How much nicer the background threads are than the process: the kernel
/// gives a busy thread 10 steps nicer about a tenth of the CPU of a busy
/// one, and all of an idle machine.
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

/// Raises the calling thread's nice value by `NICE` (on Linux, nice is per
/// thread): relative, so a host already started with `nice` or systemd's
/// `Nice=` keeps its events below its requests.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain libc calls about the calling thread; errno is this thread's.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        // getpriority can return -1 as a value: errno tells an error apart.
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        let known = *libc::__errno_location() == 0;
        let target = if known { (current + NICE).min(19) } else { NICE };
        if libc::setpriority(libc::PRIO_PROCESS, tid, target) != 0 {
            tracing::warn!(
                nice = target,
                "cannot lower the priority of a background thread; events compete with requests"
            );
        }
    }
}
