//! Per-principal limits: a token bucket for the request rate and a cap on
//! requests in flight. Exceeding either answers `rate_limited`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::service::ServiceError;

pub struct Limits {
    per_minute: f64,
    concurrency: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Limits {
    pub fn new(per_minute: u32, concurrency: usize) -> Self {
        Limits {
            per_minute: f64::from(per_minute.max(1)),
            concurrency: concurrency.max(1),
            buckets: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request of `principal`; the permit is held until the
    /// request (its whole streamed answer included) is done.
    pub fn admit(&self, principal: &str) -> Result<OwnedSemaphorePermit, ServiceError> {
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let bucket = buckets.entry(principal.to_owned()).or_insert(Bucket {
                tokens: self.per_minute,
                updated: now,
            });
            let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_minute / 60.0;
            bucket.tokens = (bucket.tokens + refill).min(self.per_minute);
            bucket.updated = now;
            if bucket.tokens < 1.0 {
                let wait = (1.0 - bucket.tokens) * 60.0 / self.per_minute;
                return Err(ServiceError::rate_limited(
                    format!("more than {} requests a minute; slow down", self.per_minute),
                    wait.ceil() as u64,
                ));
            }
            bucket.tokens -= 1.0;
        }
        let semaphore = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(principal.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.concurrency)))
            .clone();
        semaphore.try_acquire_owned().map_err(|_| {
            ServiceError::rate_limited(
                format!(
                    "at most {} requests at once per principal",
                    self.concurrency
                ),
                1,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_concurrency_are_limited_per_principal() {
        let limits = Limits::new(3, 2);
        let a = limits.admit("a").unwrap();
        let _b = limits.admit("a").unwrap();
        assert!(limits.admit("a").is_err(), "a third request in flight");
        drop(a);
        assert!(
            limits.admit("a").is_err(),
            "a fourth request within the minute"
        );
        assert!(
            limits.admit("b").is_ok(),
            "other principals are not affected"
        );
    }
}
