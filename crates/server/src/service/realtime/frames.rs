//! The JSON text frames a WebSocket subscriber receives (`routes::ws`
//! documents the protocol). Rendered once per guild, whatever the number
//! of subscribers.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};

/// One JSON text frame for subscribers (UTF-8).
pub type Frame = Bytes;

/// What a subscriber receives unasked.
#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub(super) enum Push<'a> {
    Invalidated {
        event: EventKind,
        guild_id: &'a GuildId,
        timestamp: &'a str,
    },
    Analytics {
        guild_id: &'a GuildId,
        analytics: AnalyticsKind,
        data: &'a Value,
        timestamp: &'a str,
    },
    Error {
        message: &'a str,
    },
}

pub(super) fn render(push: &Push<'_>) -> Frame {
    // Plain data with string keys: serializing cannot fail.
    Bytes::from(serde_json::to_vec(push).unwrap_or_default())
}

/// `{"type":"error","message":...}`, the frame of every error.
pub fn error_frame(message: &str) -> Frame {
    render(&Push::Error { message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalyticsKind::*;

    #[test]
    fn pushes_render_as_protocol_frames() {
        let guild = GuildId::parse("42").unwrap();
        let frame = render(&Push::Invalidated {
            event: EventKind::RoleChange,
            guild_id: &guild,
            timestamp: "t",
        });
        let frame: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type": "invalidated", "event": "role-change", "guildId": "42", "timestamp": "t"})
        );
        let data = serde_json::json!([{ "userId": "1" }]);
        let frame = render(&Push::Analytics {
            guild_id: &guild,
            analytics: Ghosts,
            data: &data,
            timestamp: "t",
        });
        let frame: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type": "analytics", "guildId": "42", "analytics": "ghosts", "data": data, "timestamp": "t"})
        );
    }
}
