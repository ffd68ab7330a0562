//! One WebSocket connection as the hub sees it: a slot within the
//! connection caps, the guilds it subscribed to (at most
//! `WS_MAX_SUBSCRIPTIONS`), and its inbox. Dropping it, however the
//! connection ended, gives everything back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use spywatcher_analytics::GuildId;
use tracing::warn;

use super::frames::Frame;
use super::hub::Hub;
use super::outbox::{Inbox, Outbox, outbox};
use super::{Refused, count_refusal};

/// How long a new subscriber waits for the watcher to listen. Longer means
/// Redis is not answering: the subscription is kept, and the subscriber
/// connection subscribes when Redis is back.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Connection {
    hub: Arc<Hub>,
    token: &'static str,
    outbox: Arc<Outbox>,
    inbox: Inbox,
    guilds: HashSet<GuildId>,
}

impl Connection {
    pub(super) fn new(hub: Arc<Hub>, token: &'static str, id: u64) -> Connection {
        let (outbox, inbox) = outbox(id);
        Connection {
            hub,
            token,
            outbox,
            inbox,
            guilds: HashSet::new(),
        }
    }

    /// The guild's pushes, from when this returns: it waits until the
    /// instance's watcher listens (up to [`LISTEN_TIMEOUT`]), so an event
    /// ingested afterwards is seen. Subscribing twice is subscribing once.
    pub async fn subscribe(&mut self, guild: &GuildId) -> Result<(), Refused> {
        if self.guilds.contains(guild) {
            return Ok(());
        }
        let max = self.hub.settings.max_subscriptions;
        if self.guilds.len() >= max {
            let refused = Refused::Subscriptions(max);
            count_refusal(refused.reason());
            return Err(refused);
        }
        // Recorded before waiting, so that it is released if this is dropped.
        let mut listening = self.hub.subscribe(guild, &self.outbox);
        self.guilds.insert(guild.clone());
        let listens = listening.wait_for(|listening| *listening);
        if tokio::time::timeout(LISTEN_TIMEOUT, listens).await.is_err() {
            warn!(
                guild = guild.as_str(),
                "pub/sub subscription not confirmed in time; pushes start when it is"
            );
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, guild: &GuildId) {
        if self.guilds.remove(guild) {
            self.hub.unsubscribe(guild, self.outbox.id());
        }
    }

    /// The next frame for this connection: pushes of its guilds, and an
    /// error frame for the updates it missed by reading too slowly.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.inbox.recv().await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for guild in std::mem::take(&mut self.guilds) {
            self.hub.unsubscribe(&guild, self.outbox.id());
        }
        self.hub.leave(self.token);
    }
}
