//! What every Redis-backed capability shares on one host: the connection,
//! the bound on one round trip, and the counter its failures go to.

use std::sync::Arc;

use crate::engine::bindings::CapError;
use crate::storage::Store as Redis;
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct Backend {
    pub redis: Redis,
    pub metrics: Arc<Metrics>,
}

impl Backend {
    /// A connection for the runtime this task runs on (see `storage::Store::conn`).
    pub fn conn(&self) -> crate::storage::Conn {
        self.redis.conn()
    }

    /// Runs a Redis call under the capability deadline, mapping and counting
    /// failures.
    pub async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, CapError> {
        self.bounded_unless(fut, |_| false).await?.map_err(|e| map_redis_error(&e))
    }

    /// [`Backend::bounded`], except that an error `keep` picks comes back
    /// as Redis gave it (and is not counted), for the caller to act on.
    pub async fn bounded_unless<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
        keep: impl Fn(&redis::RedisError) -> bool,
    ) -> Result<redis::RedisResult<T>, CapError> {
        let result = match tokio::time::timeout(self.redis.timeout, fut).await {
            Err(_) => Err(CapError::Unavailable("redis did not answer in time".into())),
            Ok(Err(e)) if keep(&e) => Ok(Err(e)),
            Ok(Err(e)) => Err(map_redis_error(&e)),
            Ok(Ok(v)) => Ok(Ok(v)),
        };
        if result.is_err() {
            self.metrics.redis_errors.inc();
        }
        result
    }
}

/// Unreachable, or reachable and not serving yet (`LOADING` after a restart,
/// `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`, or `READONLY` from a primary
/// demoted in a failover), or a cluster redirection the client could not
/// follow in time (`ASK` or `MOVED` while a slot migrates, which a
/// pipeline can meet): all pass, so all are `unavailable` (503, or an event
/// retried), never a 500. Only an error that would come again (a script's,
/// a wrong type) is internal.
pub fn map_redis_error(e: &redis::RedisError) -> CapError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
    {
        CapError::Unavailable(format!("redis: {e}"))
    } else {
        CapError::Internal(format!("redis: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_that_is_still_loading_is_unavailable_not_an_internal_error() {
        use redis::{ErrorKind, RedisError, ServerErrorKind};
        for kind in [
            ServerErrorKind::BusyLoading,
            ServerErrorKind::TryAgain,
            ServerErrorKind::ReadOnly,
            ServerErrorKind::Ask,
            ServerErrorKind::Moved,
            ServerErrorKind::ClusterDown,
        ] {
            let passing = RedisError::from((ErrorKind::Server(kind), "not now"));
            assert!(matches!(map_redis_error(&passing), CapError::Unavailable(_)), "{kind:?}");
        }
        let script_bug = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "ERR bad"));
        assert!(matches!(map_redis_error(&script_bug), CapError::Internal(_)));
    }
}
