//! roles: role changes per user (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, SINCE_DAYS_PARAMS, SINCE_PARAMS};
use crate::domain::AnalyticsKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct RoleDriftRow {
    pub user_id: String,
    pub username: String,
    pub role_change_count: i64,
    /// 1 when roleChangeCount >= 2, else 0.
    pub role_drift_score: i64,
}

impl Analytics for RoleDriftRow {
    const KIND: AnalyticsKind = AnalyticsKind::Roles;
    const TEMPLATE: &'static str = include_str!("sql/roles.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/roles.sql");
    const COUNTED_KINDS: &'static str = "4";
    const PARAMS: &'static [Param] = SINCE_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = SINCE_PARAMS;
}
