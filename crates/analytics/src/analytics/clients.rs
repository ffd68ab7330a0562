//! clients: users who use more Discord clients this week than the week
//! before (SPEC 2.2).

use serde::{Deserialize, Serialize};

use super::{Analytics, Param, WINDOW_DAYS_PARAMS, WINDOW_PARAMS};
use crate::domain::{AnalyticsKind, ClientSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ClientDriftRow {
    pub user_id: String,
    pub username: String,
    /// Union of clients in [now − 14d, now − 7d), serialized as sorted names.
    #[sqlx(try_from = "i64")]
    pub old_clients: ClientSet,
    /// Union of clients in [now − 7d, now].
    #[sqlx(try_from = "i64")]
    pub new_clients: ClientSet,
    /// Always 1 for a reported user.
    pub client_drift_score: i64,
}

impl Analytics for ClientDriftRow {
    const KIND: AnalyticsKind = AnalyticsKind::Clients;
    const TEMPLATE: &'static str = include_str!("sql/clients.sql");
    const REFERENCE: &'static str = include_str!("sql/reference/clients.sql");
    const COUNTED_KINDS: &'static str = "3";
    const PARAMS: &'static [Param] = WINDOW_DAYS_PARAMS;
    const REFERENCE_PARAMS: &'static [Param] = WINDOW_PARAMS;
}
