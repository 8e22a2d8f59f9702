//! Locks that never change behaviour silently: a mutex poisoned by a panicked task is logged as
//! an error, counted in `transition_lock_poisoned_total`, and its data used as it was left.

use std::sync::{LazyLock, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;

/// Poisoned locks seen by this process (registered in [`super::metrics::Metrics`]).
pub static POISONED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Locks `mutex` (named `what` in the error), recovering from poisoning loudly.
pub fn lock<'a, T>(mutex: &'a Mutex<T>, what: &'static str) -> MutexGuard<'a, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        POISONED.inc();
        tracing::error!(
            lock = what,
            "lock poisoned by a task that panicked; continuing with the data it left"
        );
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_counted_and_its_data_kept() {
        let m = std::sync::Arc::new(Mutex::new(7));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        let before = POISONED.get();
        assert_eq!(*lock(&m, "test"), 7);
        assert!(POISONED.get() > before);
    }
}
