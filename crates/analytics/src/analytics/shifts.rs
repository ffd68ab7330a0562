//! shifts: users whose messages stopped or whose typing spiked this week
//! compared with the week before (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, WINDOW_DAYS_PARAMS, WINDOW_PARAMS};
use crate::domain::AnalyticsKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct BehaviorShiftRow {
    pub user_id: String,
    pub username: String,
    /// Messages in the old window and none in the new.
    pub message_drop: bool,
    /// New typing > 2 × old typing, with old typing >= 5.
    pub typing_spike: bool,
    /// Number of true flags.
    pub behavior_shift_score: i64,
}

impl Analytics for BehaviorShiftRow {
    const KIND: AnalyticsKind = AnalyticsKind::Shifts;
    const TEMPLATE: &'static str = include_str!("sql/shifts.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/shifts.sql");
    const COUNTED_KINDS: &'static str = "1, 2";
    const PARAMS: &'static [Param] = WINDOW_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = WINDOW_PARAMS;
}
