//! The bytes every request in flight may hold at once, together: a request's body and
//! its answer reserve their size before they are read or written, and hold it until
//! the answer's last byte has left (the reservation travels inside the answer's
//! `Bytes`). A request that does not fit is refused at once instead of growing the
//! process.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB.
const UNIT: usize = 1024;

fn units(bytes: usize) -> Option<u32> {
    u32::try_from(bytes.div_ceil(UNIT)).ok()
}

#[derive(Clone)]
pub struct MemoryBudget(Arc<Semaphore>);

impl MemoryBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(
            (bytes / UNIT).min(Semaphore::MAX_PERMITS),
        )))
    }

    /// An empty reservation, grown as a request learns what it needs.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: Arc::clone(&self.0),
            held: None,
        }
    }
}

/// Bytes reserved in the budget until dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Reserves `bytes` more; false when the budget cannot spare them now.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let Some(units) = units(bytes) else { return false };
        if units == 0 {
            return true;
        }
        match Arc::clone(&self.budget).try_acquire_many_owned(units) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// `data` as `Bytes` that keep this reservation until they are dropped.
    pub fn hold(self, data: Vec<u8>) -> Bytes {
        Bytes::from_owner(Held {
            data,
            _reservation: self,
        })
    }
}

struct Held {
    data: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_returned_when_its_bytes_are_dropped() {
        let budget = MemoryBudget::new(4 * UNIT);
        let mut first = budget.reservation();
        assert!(first.grow(3 * UNIT));
        let mut second = budget.reservation();
        assert!(!second.grow(2 * UNIT));
        let answer = first.hold(vec![1; 10]);
        let copy = answer.clone();
        drop(answer);
        assert!(!second.grow(2 * UNIT));
        drop(copy);
        assert!(second.grow(2 * UNIT));
        assert!(second.grow(2 * UNIT));
        assert!(!second.grow(1));
    }
}
