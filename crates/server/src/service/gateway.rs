//! The gateway ingester's sink: the service's own ingestion path, so that
//! events from Discord are committed, invalidate exactly what they change
//! and are published, as events posted over HTTP are.

use spywatcher_analytics::{Event, EventKind};
use spywatcher_gateway::ingester::{EventSink, SinkError};

use super::{Source, Spywatcher};

impl EventSink for Spywatcher {
    async fn store(&self, kind: EventKind, events: &[Event]) -> Result<(), SinkError> {
        self.ingest_from(Source::Gateway, kind, events)
            .await
            .map(|_| ())
            .map_err(|e| Box::new(e) as SinkError)
    }
}
