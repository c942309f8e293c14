//! Concurrency: a count of requests in flight per team or key, taken by a [`Permit`] and given back when the permit
//! is dropped — whichever way the request ends (success, error, client disconnect, a panic unwinding through
//! the handler), because every one of those drops the value that owns the permit.
//!
//! With Redis, a node may only run as many requests as it holds slots leased from the fleet-wide count; slots
//! that stay idle are handed back by the limiter's background task (see `redis.rs`).

use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Counts {
    in_use: u32,
    /// Slots leased from Redis (fleet mode only).
    leased: u32,
}

#[derive(Debug, Default)]
pub struct Slots {
    counts: Mutex<Counts>,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // A panic while holding this lock cannot leave the counts half-updated: every update is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Per-node mode: a permit if fewer than `max` are in use.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<Permit> {
        let mut c = self.lock();
        if c.in_use >= max {
            return None;
        }
        c.in_use += 1;
        Some(Permit { slots: self.clone() })
    }

    /// Fleet mode: a permit if a leased slot is idle; `None` means a slot must be leased first.
    pub fn try_acquire_leased(self: &Arc<Self>) -> Option<Permit> {
        let mut c = self.lock();
        if c.in_use >= c.leased {
            return None;
        }
        c.in_use += 1;
        Some(Permit { slots: self.clone() })
    }

    /// Fleet mode: records `n` newly leased slots and takes one of them.
    pub fn add_leased_and_acquire(self: &Arc<Self>, n: u32) -> Permit {
        let mut c = self.lock();
        c.leased += n;
        c.in_use += 1;
        Permit { slots: self.clone() }
    }

    /// Fleet mode: takes the idle leased slots away, to be handed back to Redis.
    pub fn take_idle(&self) -> u32 {
        let mut c = self.lock();
        let idle = c.leased.saturating_sub(c.in_use);
        c.leased -= idle;
        idle
    }

    /// Fleet mode: forgets every lease (after Redis lost them), keeping requests in flight running.
    pub fn forget_leases(&self) {
        self.lock().leased = 0;
    }

    pub fn in_use(&self) -> u32 {
        self.lock().in_use
    }

    pub fn leased(&self) -> u32 {
        self.lock().leased
    }
}

/// One request in flight. Dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.slots.lock();
        c.in_use = c.in_use.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_capped_and_released_on_drop() {
        let slots = Arc::new(Slots::default());
        let a = slots.try_acquire(2).unwrap();
        let b = slots.try_acquire(2).unwrap();
        assert!(slots.try_acquire(2).is_none());
        drop(a);
        let c = slots.try_acquire(2).unwrap();
        assert_eq!(slots.in_use(), 2);
        drop((b, c));
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn a_panic_releases_the_permit() {
        let slots = Arc::new(Slots::default());
        let s = slots.clone();
        let r = std::panic::catch_unwind(move || {
            let _p = s.try_acquire(1).unwrap();
            panic!("handler blew up");
        });
        assert!(r.is_err());
        assert_eq!(slots.in_use(), 0);
        assert!(slots.try_acquire(1).is_some());
    }

    #[tokio::test]
    async fn a_cancelled_request_releases_the_permit() {
        // A client disconnect drops the request's future mid-await; the permit goes with it.
        let slots = Arc::new(Slots::default());
        let s = slots.clone();
        let task = tokio::spawn(async move {
            let _p = s.try_acquire(1).unwrap();
            std::future::pending::<()>().await;
        });
        while slots.in_use() == 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn leased_slots_bound_the_node_and_idle_ones_are_handed_back() {
        let slots = Arc::new(Slots::default());
        assert!(slots.try_acquire_leased().is_none());
        let a = slots.add_leased_and_acquire(2);
        let b = slots.try_acquire_leased().unwrap();
        assert!(slots.try_acquire_leased().is_none());
        drop(a);
        assert_eq!(slots.take_idle(), 1);
        assert_eq!((slots.leased(), slots.in_use()), (1, 1));
        drop(b);
        assert_eq!(slots.take_idle(), 1);
        assert_eq!(slots.leased(), 0);
    }
}
