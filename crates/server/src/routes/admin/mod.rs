//! `/api/admin/...`: operator routes, admin token only.

pub mod monitoring;
