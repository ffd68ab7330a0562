//! heatmap: typing per user and channel (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, SINCE_DAYS_PARAMS, SINCE_PARAMS};
use crate::domain::AnalyticsKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct HeatmapRow {
    pub user_id: String,
    /// The username of the grouped events (a renamed user has one row per name).
    pub username: String,
    pub channel_id: String,
    pub channel: String,
    pub count: i64,
}

impl Analytics for HeatmapRow {
    const KIND: AnalyticsKind = AnalyticsKind::Heatmap;
    const TEMPLATE: &'static str = include_str!("sql/heatmap.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/heatmap.sql");
    const COUNTED_KINDS: &'static str = "2";
    const PARAMS: &'static [Param] = SINCE_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = SINCE_PARAMS;
}
