//! A connection's outbox: the frames of every guild it subscribed to, in
//! one bounded queue. The watcher never waits on it: a frame that does not
//! fit is dropped and counted, and the connection is told how many updates
//! of which guild it missed before it gets anything newer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use spywatcher_analytics::GuildId;
use tokio::sync::mpsc;

use super::frames::{Frame, error_frame};

/// Frames waiting for a connection that reads slowly (its socket, its
/// network); one that falls further behind misses updates. The queue
/// takes memory only for the frames in it.
const CAPACITY: usize = 1024;

/// The sending side, held by the guilds the connection subscribed to.
pub(super) struct Outbox {
    /// Unique in the instance: tells one connection's outbox from another's.
    id: u64,
    frames: mpsc::Sender<Frame>,
    missed: Mutex<BTreeMap<GuildId, u64>>,
    any_missed: AtomicBool,
}

/// The receiving side, read by the connection.
pub(super) struct Inbox {
    outbox: Arc<Outbox>,
    frames: mpsc::Receiver<Frame>,
    /// Error frames about missed updates, sent before anything newer.
    notices: VecDeque<Frame>,
}

pub(super) fn outbox(id: u64) -> (Arc<Outbox>, Inbox) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let outbox = Arc::new(Outbox {
        id,
        frames: tx,
        missed: Mutex::default(),
        any_missed: AtomicBool::new(false),
    });
    let inbox = Inbox {
        outbox: outbox.clone(),
        frames: rx,
        notices: VecDeque::new(),
    };
    (outbox, inbox)
}

impl Outbox {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Queues `frame`, an update of `guild`, unless the queue is full.
    pub(super) fn push(&self, guild: &GuildId, frame: Frame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.frames.try_send(frame) {
            let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
            *missed.entry(guild.clone()).or_default() += 1;
            self.any_missed.store(true, Ordering::Release);
        }
    }
}

impl Inbox {
    /// The next frame. Never `None` while the connection holds its outbox.
    pub(super) async fn recv(&mut self) -> Option<Frame> {
        if self.outbox.any_missed.swap(false, Ordering::Acquire) {
            let missed =
                std::mem::take(&mut *self.outbox.missed.lock().unwrap_or_else(|e| e.into_inner()));
            self.notices.extend(missed.into_iter().map(|(guild, n)| {
                error_frame(&format!(
                    "missed {n} updates of guild {} (reading too slowly); re-read its analytics",
                    guild.as_str()
                ))
            }));
        }
        if let Some(notice) = self.notices.pop_front() {
            return Some(notice);
        }
        self.frames.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn a_full_outbox_drops_and_says_how_many_were_missed() {
        let (outbox, mut inbox) = outbox(1);
        let guild = GuildId::parse("42").unwrap();
        for i in 0..CAPACITY + 3 {
            outbox.push(&guild, Bytes::from(i.to_string()));
        }
        let notice: serde_json::Value =
            serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
        assert_eq!(notice["type"], "error");
        assert!(
            notice["message"]
                .as_str()
                .unwrap()
                .starts_with("missed 3 updates of guild 42"),
            "{notice}"
        );
        assert_eq!(inbox.recv().await.unwrap(), Bytes::from("0"));
    }
}
