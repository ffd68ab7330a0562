//! ghosts: users with at least one typing event, ranked by how much they type
//! without sending (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, SINCE_DAYS_PARAMS, SINCE_PARAMS};
use crate::domain::AnalyticsKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GhostRow {
    pub user_id: String,
    pub username: String,
    pub typing_count: i64,
    pub message_count: i64,
    /// typingCount / (messageCount + 1).
    pub ghost_score: f64,
}

impl Analytics for GhostRow {
    const KIND: AnalyticsKind = AnalyticsKind::Ghosts;
    const TEMPLATE: &'static str = include_str!("sql/ghosts.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/ghosts.sql");
    const COUNTED_KINDS: &'static str = "1, 2";
    const PARAMS: &'static [Param] = SINCE_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = SINCE_PARAMS;
}
