//! The query pool: where queries are parsed, checked, planned and run.
//!
//! Two things a query does must not reach the threads that accept and
//! serve connections. It computes for long (a DP aggregate over millions of
//! rows), which on the async workers would leave `/healthz` and every other
//! request waiting behind it; and it recurses as deep as the statement
//! nests, in the parser, the planner and DataFusion's rewrites, which on a
//! 2 MiB worker stack can overflow and take the process down. So queries
//! run on a runtime of their own, whose threads have [`STACK`] bytes of
//! stack (the SQL front end bounds nesting to fit well inside it; see
//! `veil_engine::MAX_OPERATORS`) and, on Linux, a lower scheduling priority, so that
//! the I/O workers are scheduled first when both want the CPU.

use std::future::Future;

use super::ServiceError;

/// The stack of a query thread: the policy stage's limits keep the deepest
/// accepted statement at a fraction of it, in debug builds too.
pub const STACK: usize = 64 << 20;

/// The niceness of query threads (Linux): higher is scheduled later.
const NICE: i32 = 10;

/// A runtime for queries, shut down in the background when dropped (so it
/// may be dropped from async code).
pub struct QueryPool {
    runtime: Option<tokio::runtime::Runtime>,
}

impl QueryPool {
    /// A pool of one thread per core (at least two).
    pub fn new() -> std::io::Result<QueryPool> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("veil-query")
            .thread_stack_size(STACK)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(QueryPool {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken on drop")
            .handle()
    }

    /// Runs `work` on the pool and waits for it from any runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ServiceError> {
        self.handle()
            .spawn(work)
            .await
            .map_err(ServiceError::internal)
    }

    /// Starts `work` on the pool without waiting for it.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle().spawn(work);
    }

    /// Runs `work` on the pool from a thread outside any runtime (a CLI
    /// command).
    pub fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let handle = self.handle();
        handle
            .block_on(handle.spawn(work))
            .map_err(ServiceError::internal)
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux, PRIO_PROCESS with 0 names the calling thread only.
    // SAFETY: setpriority reads no memory of ours; a failure (not allowed
    // to lower the priority) leaves the thread as it was, which is fine.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = NICE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_recursion_fits_on_a_query_thread() {
        // Far deeper than a 2 MiB stack holds, well within STACK.
        fn depth(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 4096]);
            if n == 0 {
                u32::from(pad[0])
            } else {
                depth(n - 1) + 1
            }
        }
        let pool = QueryPool::new().unwrap();
        assert_eq!(pool.block_on(async { depth(4000) }).unwrap(), 4000);
    }

    #[tokio::test]
    async fn a_pool_can_be_dropped_inside_a_runtime() {
        let pool = QueryPool::new().unwrap();
        assert_eq!(pool.run(async { 2 + 2 }).await.unwrap(), 4);
        drop(pool);
    }
}
