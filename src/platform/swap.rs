//! A value every shard reads and a reload replaces: the TLS configuration, the key ring,
//! the JWT verifier. A shard keeps its own `Arc` and compares [`Swap::generation`] once
//! per loop (one atomic load); only when it moved does it take the lock and the new `Arc`.
//! Requests in progress keep the value they started with.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub struct Swap<T> {
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Swap<T> {
    pub fn new(value: Arc<T>) -> Swap<T> {
        Swap { generation: AtomicU64::new(1), current: Mutex::new(value) }
    }

    /// Changes whenever [`Swap::replace`] runs.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The value in force and its generation, read together.
    pub fn current(&self) -> (u64, Arc<T>) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), Arc::clone(&current))
    }

    /// Puts `value` in force for every reader from its next check on.
    pub fn replace(&self, value: Arc<T>) -> u64 {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        *current = value;
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// A shard's copy of a [`Swap`]ped value and the generation it was taken at.
pub struct Local<T> {
    shared: Arc<Swap<T>>,
    generation: u64,
    value: Arc<T>,
}

impl<T> Local<T> {
    pub fn new(shared: Arc<Swap<T>>) -> Local<T> {
        let (generation, value) = shared.current();
        Local { shared, generation, value }
    }

    /// Takes the shared value if a reload replaced it; true when it did.
    pub fn refresh(&mut self) -> bool {
        if self.shared.generation() == self.generation {
            return false;
        }
        (self.generation, self.value) = self.shared.current();
        true
    }

    pub fn get(&self) -> &Arc<T> {
        &self.value
    }
}

impl<T> std::ops::Deref for Local<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locals_see_a_replacement_at_their_next_refresh() {
        let shared = Arc::new(Swap::new(Arc::new(1)));
        let mut local = Local::new(Arc::clone(&shared));
        assert!(!local.refresh());
        assert_eq!(**local.get(), 1);
        shared.replace(Arc::new(2));
        assert_eq!(**local.get(), 1, "no change until the refresh");
        assert!(local.refresh());
        assert_eq!(**local.get(), 2);
        assert!(!local.refresh());
    }
}
