//! lurkers: users seen online who never typed nor wrote (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, SINCE_DAYS_PARAMS, SINCE_PARAMS};
use crate::domain::AnalyticsKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct LurkerRow {
    pub user_id: String,
    pub username: String,
    pub presence_count: i64,
    /// 1 when presenceCount >= 5, else 0.
    pub lurker_score: i64,
}

impl Analytics for LurkerRow {
    const KIND: AnalyticsKind = AnalyticsKind::Lurkers;
    const TEMPLATE: &'static str = include_str!("sql/lurkers.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/lurkers.sql");
    const COUNTED_KINDS: &'static str = "3";
    const PARAMS: &'static [Param] = SINCE_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = SINCE_PARAMS;
}
