//! `/api/admin/monitoring/...`

pub mod cache;
