//! The value every cache benchmark reads: rows of a cached analytics
//! result, exactly 1 KiB of JSON. Shared by `benches/` and `examples/load.rs`.

use serde::{Deserialize, Serialize};

/// About 1 KiB of JSON: exactly this many bytes.
pub const VALUE_BYTES: usize = 1_024;

/// One row of a cached analytics result: what the values are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    user_id: String,
    username: String,
    typing_count: u64,
    message_count: u64,
    ghost_score: f64,
}

/// Rows whose JSON is exactly [`VALUE_BYTES`] long (below the compression
/// threshold, which applies *above* 1 KiB: stored plain).
pub fn value_1k() -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0.. {
        let row = Row {
            user_id: format!("{}", 100_000_000_000_000_000u64 + i),
            username: format!("user{i}"),
            typing_count: 10 + i,
            message_count: i,
            ghost_score: (10.0 + i as f64) / (i as f64 + 1.0),
        };
        rows.push(row);
        if serde_json::to_vec(&rows).unwrap().len() > VALUE_BYTES - 120 {
            break;
        }
    }
    let len = serde_json::to_vec(&rows).unwrap().len();
    rows.last_mut()
        .unwrap()
        .username
        .push_str(&"x".repeat(VALUE_BYTES - len));
    assert_eq!(serde_json::to_vec(&rows).unwrap().len(), VALUE_BYTES);
    rows
}
