//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole API.
//!
//! Written out by hand from SPEC 4 rather than generated: the API is small,
//! and a test checks that every route the router serves is documented here.

use axum::Json;
use serde_json::{Value, json};
use std::sync::OnceLock;

pub async fn document() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(build).clone())
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn build() -> Value {
    let analytics_params = json!([
        { "name": "type", "in": "path", "required": true,
          "schema": { "type": "string", "enum": ["ghosts", "lurkers", "heatmap", "roles", "clients", "shifts"] } },
        { "name": "guildId", "in": "query", "required": true, "schema": { "$ref": "#/components/schemas/Snowflake" } },
        { "name": "since", "in": "query", "required": false,
          "description": "Only events at or after this instant: RFC 3339, or epoch milliseconds in digits; from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z",
          "schema": { "$ref": "#/components/schemas/InstantString" } },
        { "name": "If-None-Match", "in": "header", "required": false, "schema": { "type": "string" } }
    ]);
    let analytics_responses = json!({
        "200": {
            "description": "The analytics rows. `X-Cache: hit|miss|stale` (stale: an analytics with a grace, `CACHE_GRACE_<TYPE>`, served within it while it is refreshed; `Age` then says how old it is), `ETag`.",
            "headers": {
                "X-Cache": { "schema": { "type": "string", "enum": ["hit", "miss", "stale"] } },
                "Age": { "description": "Only with `X-Cache: stale`: seconds since the value was computed", "schema": { "type": "integer" } },
                "ETag": { "schema": { "type": "string" } }
            },
            "content": { "application/json": { "schema": { "type": "array", "items": { "type": "object" } } } }
        },
        "304": { "description": "Not modified (If-None-Match matched the current ETag)" },
        "400": error_response("Bad guildId or since (names which)"),
        "401": error_response("Missing or unknown token"),
        "403": error_response("Token lacks the read role"),
        "404": error_response("Unknown analytics type"),
        "408": error_response("POST: the body was not received within HTTP_BODY_TIMEOUT_MS"),
        "413": error_response("POST: body larger than BODY_LIMIT_BYTES (refused from Content-Length before it is read)"),
        "415": error_response("POST with a body: Content-Type is not application/json, or the body has a Content-Encoding"),
        "429": error_response("Rate limited (a cache miss costs RATE_LIMIT_MISS_COST units, a hit one), or too many failed authentications from this address; see Retry-After"),
        "503": error_response("Not answered within HTTP_REQUEST_TIMEOUT_MS")
    });
    let analytics_op = |verb: &str| {
        json!({
            "summary": format!("One behaviour analytics for a guild ({verb})"),
            "security": [{ "bearer": [] }],
            "parameters": analytics_params,
            "responses": analytics_responses
        })
    };
    let mut analytics_post = analytics_op("POST alias");
    analytics_post["requestBody"] = json!({ "required": false,
        "description": "The parameters may come in the body instead; its fields win over the query string's",
        "content": { "application/json": { "schema": { "type": "object", "properties": {
            "guildId": { "$ref": "#/components/schemas/Snowflake" },
            "since": { "$ref": "#/components/schemas/Instant" } } } } } });
    let admin = |summary: &str, extra: Value| {
        let mut op = json!({
            "summary": summary,
            "security": [{ "bearer": [] }],
            "responses": {
                "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } },
                "401": error_response("Missing or unknown token"),
                "403": error_response("Not the admin token"),
                "429": error_response("Too many failed authentications from this address; see Retry-After"),
                "503": error_response("Not answered within HTTP_REQUEST_TIMEOUT_MS")
            }
        });
        if let (Some(op), Some(extra)) = (op.as_object_mut(), extra.as_object()) {
            op.extend(extra.clone());
        }
        op
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "spywatcher",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Discord server behaviour analytics, served through a Redis-backed cache."
        },
        "paths": {
            "/api/analytics/{type}": { "get": analytics_op("GET"), "post": analytics_post },
            "/api/events/{kind}": {
                "post": {
                    "summary": "Ingest one event or a batch (all or nothing)",
                    "security": [{ "bearer": [] }],
                    "parameters": [{ "name": "kind", "in": "path", "required": true,
                        "schema": { "type": "string", "enum": ["messages", "typing", "presence", "role-changes", "member-joins"] } }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "oneOf": [{ "$ref": "#/components/schemas/Event" },
                                  { "type": "array", "items": { "$ref": "#/components/schemas/Event" } }] } } } },
                    "responses": {
                        "201": { "description": "Stored after commit", "content": { "application/json": { "schema": {
                            "type": "object", "properties": { "stored": { "type": "integer" } } } } } },
                        "400": error_response("Malformed JSON"),
                        "401": error_response("Missing or unknown token"),
                        "403": error_response("Token lacks the ingest role"),
                        "404": error_response("Unknown event kind"),
                        "408": error_response("The body was not received within HTTP_BODY_TIMEOUT_MS"),
                        "413": error_response("Body larger than BODY_LIMIT_BYTES (refused from Content-Length before it is read)"),
                        "415": error_response("Content-Type is not application/json (a charset parameter is fine), or the body has a Content-Encoding"),
                        "422": error_response("An invalid event (a number for an id, a createdAt out of range or too far in the future...): names its index and field; nothing stored"),
                        "429": error_response("Too many failed authentications from this address; see Retry-After"),
                        "503": error_response("Not answered within HTTP_REQUEST_TIMEOUT_MS")
                    }
                }
            },
            "/api/admin/monitoring/cache/stats": { "get": admin("Cache statistics: {stats, insights, status, journalBacklog, timestamp} (journalBacklog: invalidations the database journal holds that Redis has not taken yet; insights: per analytics type reads, hit rate, entry lifetimes, entries expired unread, miss cost, bytes per entry, stale serves, what a grace would serve; busiestGuilds; suggestions with reason, figures and the variable that applies them)", json!({})) },
            "/api/admin/monitoring/cache/clear": { "delete": admin("Delete every entry under the cache prefix: {message, deleted, timestamp}", json!({})) },
            "/api/admin/monitoring/cache/invalidate/{tag}": { "delete": admin("Invalidate a tag: {tag, invalidated, timestamp}", json!({
                "parameters": [{ "name": "tag", "in": "path", "required": true,
                    "schema": { "type": "string", "pattern": "^[A-Za-z0-9:_.-]{1,200}$" } }]
            })) },
            "/api/admin/monitoring/cache/warm": { "post": admin("Compute and cache all six analytics of a guild", json!({
                "parameters": [{ "name": "guildId", "in": "query", "required": true, "schema": { "$ref": "#/components/schemas/Snowflake" } }]
            })) },
            "/api/guilds": { "get": {
                "summary": "The guilds that have events: [{guildId}], in id order",
                "security": [{ "bearer": [] }],
                "responses": {
                    "200": { "description": "The guilds", "content": { "application/json": { "schema": {
                        "type": "array", "items": { "type": "object", "properties": { "guildId": { "$ref": "#/components/schemas/Snowflake" } } } } } } },
                    "401": error_response("Missing or unknown token"),
                    "403": error_response("Token lacks the read role")
                }
            } },
            "/": { "get": { "summary": "The dashboard (HTML): the cache and a guild's analytics, live", "responses": { "200": { "description": "text/html" } } } },
            "/docs": { "get": { "summary": "This document, rendered (HTML)", "responses": { "200": { "description": "text/html" } } } },
            "/health/live": { "get": { "summary": "Liveness", "responses": { "200": { "description": "Alive" } } } },
            "/health/ready": { "get": { "summary": "Readiness: database and cache state; with DISCORD_TOKEN, the gateway's (gateway.status: connecting, ready, resuming or disconnected; lastError, shard, buffered, eventsRead, eventsStored, reconnects); with CACHE_WARM_ON_START, warming's progress (warmOnStart.status: ranking, running or done; guildsAsked, guilds, warmed, failed)",
                "responses": { "200": { "description": "Ready or degraded" }, "503": { "description": "Database unavailable" } } } },
            "/ws": { "get": {
                "summary": "WebSocket: subscribe to guilds, receive their invalidations and fresh analytics",
                "description": "Client frames: {\"type\":\"subscribe\"|\"unsubscribe\",\"guildId\"}. Server frames: {\"type\":\"subscribed\"|\"unsubscribed\",\"guildId\"}, {\"type\":\"invalidated\",\"event\",\"guildId\",\"timestamp\"}, {\"type\":\"analytics\",\"guildId\",\"analytics\",\"data\",\"timestamp\"} (at most one per analytics per WS_PUSH_INTERVAL_MS), {\"type\":\"error\",\"message\"}.",
                "security": [{ "bearer": [] }],
                "parameters": [{ "name": "token", "in": "query", "required": false,
                    "description": "The bearer token, for clients that cannot set headers (browsers); the Authorization header wins",
                    "schema": { "type": "string" } }],
                "responses": {
                    "101": { "description": "Switching to the WebSocket protocol" },
                    "400": error_response("Not a WebSocket handshake"),
                    "401": error_response("Missing or unknown token"),
                    "403": error_response("Token lacks the read role"),
                    "429": error_response("Too many failed authentications from this address, handshakes over the rate limit, or WS_MAX_CONNECTIONS_PER_TOKEN reached (Retry-After)"),
                    "503": error_response("WS_MAX_CONNECTIONS reached on this instance (Retry-After)")
                }
            } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "Text exposition format" } } } },
            "/api/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "Authorization: Bearer <token>; the scheme in any case (RFC 7235)" } },
            "schemas": {
                "Snowflake": { "type": "string", "pattern": "^[0-9]{1,20}$",
                    "description": "A Discord id: always a JSON string, never a number" },
                "InstantString": {
                    "description": "An instant written as a string: RFC 3339 or epoch milliseconds in digits, from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (253402300799999) whatever the spelling",
                    "oneOf": [
                        { "type": "string", "format": "date-time" },
                        { "type": "string", "pattern": "^[0-9]{1,15}$" }
                    ] },
                "Instant": {
                    "description": "An instant: RFC 3339, or epoch milliseconds as an integer or a string of digits, from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z (253402300799999) whatever the spelling",
                    "oneOf": [
                        { "type": "string", "format": "date-time" },
                        { "type": "string", "pattern": "^[0-9]{1,15}$" },
                        { "type": "integer", "format": "int64", "minimum": 0, "maximum": 253402300799999i64 }
                    ] },
                "Error": { "type": "object", "required": ["error", "message"],
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" },
                                    "index": { "type": "integer" }, "field": { "type": "string" } } },
                "Event": { "type": "object", "required": ["guildId", "userId", "username"],
                    "properties": {
                        "guildId": { "$ref": "#/components/schemas/Snowflake" },
                        "userId": { "$ref": "#/components/schemas/Snowflake" },
                        "username": { "type": "string" },
                        "channelId": { "$ref": "#/components/schemas/Snowflake" },
                        "channel": { "type": "string" },
                        "content": { "type": "string" },
                        "clients": { "type": "array", "items": { "type": "string", "enum": ["desktop", "mobile", "web"] } },
                        "addedRoles": { "type": "array", "items": { "type": "string" } },
                        "accountAgeDays": { "type": "integer", "minimum": 0 },
                        "createdAt": { "$ref": "#/components/schemas/Instant",
                            "description": "Defaults to the time of receipt; at most EVENT_MAX_FUTURE_SKEW_MS (default 5 minutes) later than it" }
                    } }
            }
        }
    })
}
