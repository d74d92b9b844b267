//! The daemon's one stop signal. SIGTERM, SIGINT, a failed task or the end of `run` request
//! it once; the main loop, the metrics server and the QUIC worker's thread all end on it.
//! Anyone holding a copy can request it and see it requested, from a task or from a thread.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Default)]
struct Inner {
    requested: AtomicBool,
    wake: Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything that holds this signal to stop. Idempotent.
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    /// Whether a stop was requested: what a thread checks between two pieces of work.
    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Waits until a stop is requested: what a task selects on.
    pub async fn requested(&self) {
        loop {
            let woken = self.0.wake.notified();
            tokio::pin!(woken);
            // Registered before the check, so a request between the two is not missed.
            woken.as_mut().enable();
            if self.is_requested() {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_waiting_tasks_and_threads() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stop = Shutdown::new();
        let thread_view = stop.clone();
        let thread = std::thread::spawn(move || {
            while !thread_view.is_requested() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        let task_view = stop.clone();
        runtime.block_on(async {
            let waiter = tokio::spawn(async move { task_view.requested().await });
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "ended before any request");
            stop.request();
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("the task saw the request")
                .unwrap();
        });
        thread.join().unwrap();
        // A late waiter returns at once.
        runtime.block_on(stop.requested());
    }
}
