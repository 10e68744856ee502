//! The proxy's own threads: one single-threaded runtime per thread, each serving the client
//! connections handed to it, round-robin, by the listeners.
//!
//! A client connection, the backend connections its requests use and every wake-up between
//! them then stay on one thread. On a work-stealing runtime the tasks of one request hop
//! between workers, and each hop wakes another thread; with the proxy, the load generator and
//! the backends all busy on few cores, those wake-ups cost more than the stealing brings.
//! Accepting stays on the caller's runtime: it happens once per connection, not per request.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};

thread_local! {
    /// The index of the shard running on this thread; 0 on any other thread.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Which shard the current thread is, for keeping per-shard state such as idle connections.
pub(crate) fn current() -> usize {
    SHARD.with(Cell::get)
}

pub(crate) struct Shards {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these ends the threads, and with them every task still on their runtimes.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Shards {
    /// Starts `threads` shard threads. Threads that cannot be started are logged and left out;
    /// with none at all, connections run on the runtime that accepted them.
    pub fn start(threads: usize) -> Shards {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for index in 0..threads {
            match start_one(index) {
                Ok((handle, stop)) => {
                    handles.push(handle);
                    stops.push(stop);
                }
                Err(err) => {
                    tracing::warn!(error = %err, index, "load-balancer thread not started; serving with fewer threads");
                    break;
                }
            }
        }
        Shards { handles, next: AtomicUsize::new(0), _stop: stops }
    }

    /// Runs `task` on the next shard in turn (or on the current runtime if there is none).
    pub fn spawn<F>(&self, set: &mut JoinSet<()>, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.handles.is_empty() {
            return set.spawn(task);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        set.spawn_on(task, &self.handles[i])
    }
}

fn start_one(index: usize) -> std::io::Result<(Handle, oneshot::Sender<()>)> {
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    // The runtime is built and dropped on its own thread: dropping one inside the caller's
    // async context would panic.
    std::thread::Builder::new().name(format!("corral-lb-{index}")).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(err) => {
                let _ = ready_tx.send(Err(err));
                return;
            }
        };
        let _ = ready_tx.send(Ok(rt.handle().clone()));
        SHARD.with(|s| s.set(index));
        // Either a stop or a dropped sender ends it; the runtime's tasks are dropped with it.
        let _ = rt.block_on(stopped);
    })?;
    let handle = ready.recv().map_err(|_| std::io::Error::other("the thread ended before its runtime started"))??;
    Ok((handle, stop))
}
