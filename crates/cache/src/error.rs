//! Errors of the cache layer. Callers of [`Cache`](crate::Cache) rarely see
//! them: a store fault is a miss or a skipped write (SPEC 1.2.5). They surface
//! from construction, from a value that cannot be serialized, and inside the
//! store implementations, where the fail-open wrapper counts them.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("value cannot be serialized to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cached value does not deserialize to the requested type: {0}")]
    Deserialize(#[source] serde_json::Error),
    #[error("cached value is corrupt: {0}")]
    Corrupt(String),
}

/// A failure of the store behind the cache (Redis), as seen by the fail-open wrapper.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Reply(#[from] redis::ParsingError),
    #[error("redis call timed out")]
    Timeout,
    /// On a cluster: no replica of the master at this address acknowledged
    /// an invalidation in time, so a failover could undo it.
    #[error("no replica of the Redis master at {0} acknowledged the write in time")]
    Unacknowledged(String),
    /// What this store cannot do with these arguments (not a sign that
    /// Redis is unwell).
    #[error("{0}")]
    Unsupported(String),
    #[error("circuit breaker open: redis skipped")]
    CircuitOpen,
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Why a [`Cache`](crate::Cache) could not be built.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
    #[error(
        "invalid cache prefix {0:?}: must be non-empty and contain no glob characters (* ? [ ])"
    )]
    Prefix(String),
    #[error(
        "invalid cache prefix {0:?} for Redis Cluster: it may not contain {{ or }}, which would choose the cluster slot of every key"
    )]
    ClusterPrefix(String),
    #[error("Redis Cluster needs at least one node")]
    NoClusterNodes,
}

/// A failure to record or read the pending-invalidation journal.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;
