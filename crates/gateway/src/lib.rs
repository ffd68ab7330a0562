//! Discord gateway ingestion (SPEC 2.5): events straight from a Discord
//! shard become spywatcher events. Knows Discord and the analytics domain,
//! nothing of HTTP or of the cache: what stores a batch is an
//! [`EventSink`] the caller provides (the service's own ingestion path).
//!
//! # Layout
//!
//! * [`names`]: the names caches (channel id → name, role id → name,
//!   member id → role ids and username), per guild.
//! * [`mapping`]: [`Mapper::map`], a twilight gateway event → zero or one
//!   spywatcher [`Event`](spywatcher_analytics::Event), per the table of
//!   SPEC 2.5; pure, the receive time passed in.
//! * [`ingester`]: runs a twilight `Shard`, maps its events into a bounded
//!   buffer, and a consumer that stores them in batches through the
//!   [`EventSink`], retrying a failed batch; health and metrics.

pub mod ingester;
pub mod mapping;
pub mod names;

pub use mapping::Mapper;
