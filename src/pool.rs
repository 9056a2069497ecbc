//! A pool of interchangeable copies of something threads cannot share.
//!
//! libtorch tensors are `Send` but not `Sync`, and OpenCV's cascade detects
//! through `&mut self`, so a loaded network or cascade serves one thread at a
//! time. Behind one lock, concurrent requests (and the two halves of one clip)
//! would queue for it; a pool holds one copy per concurrent user instead, each
//! borrowed for one call.

use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// Copies of a `T`, made by one loader; [`Pool::with`] lends one.
pub struct Pool<T> {
    free: Mutex<Vec<T>>,
    load: Box<dyn Fn() -> Result<T> + Send + Sync>,
    what: &'static str,
}

impl<T: Send> Pool<T> {
    /// Loads `size` copies (at least one, so a bad loader fails at start-up,
    /// not on the first request). `what` names them in errors.
    pub fn new(what: &'static str, size: usize, load: impl Fn() -> Result<T> + Send + Sync + 'static) -> Result<Self> {
        let copies = (0..size.max(1)).map(|_| load()).collect::<Result<Vec<_>>>()?;
        Ok(Self { free: Mutex::new(copies), load: Box::new(load), what })
    }

    /// Runs `work` with a borrowed copy, loading another if every copy is
    /// lent out (more callers than the pool was sized for); the copy goes
    /// back afterwards, so the pool grows to the peak number of callers.
    pub fn with<R>(&self, work: impl FnOnce(&mut T) -> R) -> Result<R> {
        let borrowed = self.free.lock().map_err(|_| anyhow!("{} pool poisoned", self.what))?.pop();
        let mut copy = match borrowed {
            Some(copy) => copy,
            None => (self.load)()?,
        };
        let out = work(&mut copy);
        if let Ok(mut free) = self.free.lock() {
            free.push(copy);
        }
        Ok(out)
    }

    /// Copies currently idle in the pool.
    pub fn idle(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn lends_copies_and_takes_them_back() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = loads.clone();
        let pool = Pool::new("counter", 2, move || Ok(counter.fetch_add(1, Ordering::SeqCst))).unwrap();
        assert_eq!((loads.load(Ordering::SeqCst), pool.idle()), (2, 2));
        let seen = pool.with(|copy| *copy).unwrap();
        assert!(seen < 2);
        assert_eq!((loads.load(Ordering::SeqCst), pool.idle()), (2, 2));
    }

    #[test]
    fn more_callers_than_copies_load_more() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = loads.clone();
        let pool = Pool::new("counter", 1, move || Ok(counter.fetch_add(1, Ordering::SeqCst))).unwrap();
        // Three threads hold a copy at the same time.
        let barrier = Barrier::new(3);
        let ids: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        pool.with(|copy| {
                            barrier.wait();
                            *copy
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids = ids;
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2]);
        assert_eq!((loads.load(Ordering::SeqCst), pool.idle()), (3, 3));
    }

    #[test]
    fn a_failing_loader_fails_at_creation() {
        let result = Pool::<u8>::new("broken", 2, || Err(anyhow!("no such file")));
        assert!(result.is_err_and(|e| e.to_string().contains("no such file")));
    }
}
