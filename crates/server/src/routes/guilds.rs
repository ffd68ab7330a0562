//! `GET /api/guilds`: the guilds that have events, for a client to choose
//! from (the dashboard's guild picker).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::{Authorized, Reader};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    _: Authorized<Reader>,
) -> Result<Json<Value>, ApiError> {
    let guilds = state.service.store.guild_ids().await?;
    Ok(Json(Value::Array(
        guilds
            .iter()
            .map(|guild| json!({ "guildId": guild.as_str() }))
            .collect(),
    )))
}
