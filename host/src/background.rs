//! Background work: the `Supervisor` that starts every long-lived task and
//! stops them all, and the tokio runtime that stream readers, their
//! handlers, the delayed-event mover, the outbox publisher and the trimmer
//! run on.
//!
//! Its threads have a lower scheduling priority than the gateway's: events
//! are work nobody is waiting on, so under load they take the CPU requests
//! leave over instead of half of it, and on an idle machine they have every
//! core. Nothing is lost by waiting: an event not yet handled is still
//! pending in Redis. Each runtime has its own Redis connection (see
//! `store::Store::conn`), so a reply never wakes a thread of the other one.

use std::cell::Cell;
use std::time::Duration;

use anyhow::Result;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a worker that panicked waits before it runs again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Every long-lived task of the host: one token tells them all to stop, one
/// tracker waits for them all (a reader a swap removed, and its handlers in
/// flight, included), and a worker that panics is restarted, not lost.
#[derive(Clone)]
pub struct Supervisor {
    shutdown: CancellationToken,
    tasks: TaskTracker,
    background: Handle,
}

impl Supervisor {
    /// `background`: the runtime of `runtime()`.
    pub fn new(background: Handle) -> Supervisor {
        Supervisor { shutdown: CancellationToken::new(), tasks: TaskTracker::new(), background }
    }

    /// A stop signal of its own, also given at shutdown (a reader's).
    pub fn child_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Runs `task` on the calling runtime until it ends; shutdown waits for it.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Runs `task` on the background runtime; shutdown waits for it.
    pub fn spawn_on_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_on(task, &self.background);
    }

    /// Runs the worker `start` makes on the calling runtime until shutdown,
    /// starting it again if it panics.
    pub fn worker<F, Fut>(&self, name: &'static str, start: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(restarting(name, start, self.shutdown.clone(), Handle::current()));
    }

    /// As `worker`, on the background runtime.
    pub fn background_worker<F, Fut>(&self, name: &'static str, start: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = restarting(name, start, self.shutdown.clone(), self.background.clone());
        self.tasks.spawn_on(task, &self.background);
    }

    /// Tells every task to stop and waits until they all have.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Runs `start`'s worker on `on` until `stop`; a panic is logged and the
/// worker started again after `RESTART_AFTER`.
async fn restarting<F, Fut>(name: &'static str, start: F, stop: CancellationToken, on: Handle)
where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match on.spawn(start(stop.clone())).await {
            Err(e) if e.is_panic() && !stop.is_cancelled() => {
                tracing::error!(worker = name, "background worker panicked; restarting it");
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_AFTER) => {}
                    _ = stop.cancelled() => return,
                }
            }
            // A worker whose feature is off (no JWKS file, no bound, no
            // cache) has nothing to do.
            Ok(()) if !stop.is_cancelled() => {
                tracing::debug!(worker = name, "background worker has nothing to do");
                return;
            }
            _ => return,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_panics_runs_again_and_stop_waits_for_it() {
        let sup = Supervisor::new(Handle::current());
        let starts = Arc::new(AtomicU32::new(0));
        let seen = starts.clone();
        sup.worker("test", move |stop| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("first run fails");
                }
                stop.cancelled().await;
            }
        });
        tokio::time::sleep(RESTART_AFTER * 2).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted once after the panic");
        sup.stop().await;
        assert!(sup.tasks.is_empty(), "stop waited for every task");
    }
}
