//! Request bodies to events: what is accepted and how rejections read.

mod common;

use common::now;
use serde_json::{Value, json};
use spywatcher_analytics::{
    ClientSet, DEFAULT_MAX_FUTURE_SKEW, EventKind, Payload, parse_events_at,
};

fn error(kind: EventKind, body: Value) -> String {
    parse_events_at(kind, body, now(), DEFAULT_MAX_FUTURE_SKEW)
        .expect_err("should be rejected")
        .to_string()
}

fn base() -> serde_json::Map<String, Value> {
    json!({"guildId": "1", "userId": "2", "username": "ann"})
        .as_object()
        .unwrap()
        .clone()
}

fn with(fields: Value) -> Value {
    let mut obj = base();
    obj.extend(fields.as_object().unwrap().clone());
    Value::Object(obj)
}

#[test]
fn each_kind_parses_its_fields() {
    let cases = [
        (
            EventKind::Message,
            json!({"channelId": "3", "channel": "general", "content": "hi"}),
        ),
        (
            EventKind::Typing,
            json!({"channelId": "3", "channel": "general"}),
        ),
        (EventKind::Presence, json!({"clients": ["web", "desktop"]})),
        (EventKind::RoleChange, json!({"addedRoles": ["VIP"]})),
        (EventKind::MemberJoin, json!({"accountAgeDays": 0})),
    ];
    for (kind, fields) in cases {
        let events =
            parse_events_at(kind, with(fields.clone()), now(), DEFAULT_MAX_FUTURE_SKEW).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind(), kind);
        assert_eq!(events[0].created_at, now(), "createdAt defaults to now");
        // An event serializes back to the body it came from.
        let mut back = serde_json::to_value(&events[0]).unwrap();
        back.as_object_mut().unwrap().remove("createdAt");
        if kind == EventKind::Presence {
            assert_eq!(back["clients"], json!(["desktop", "web"]));
        } else {
            assert_eq!(back, with(fields));
        }
    }
}

#[test]
fn a_batch_is_an_array_and_created_at_takes_both_forms() {
    let body = json!([
        with(json!({"clients": [], "createdAt": "2026-11-01T00:00:00Z"})),
        with(json!({"clients": ["mobile"], "createdAt": 1_793_491_200_000_i64})),
    ]);
    let events =
        parse_events_at(EventKind::Presence, body, now(), DEFAULT_MAX_FUTURE_SKEW).unwrap();
    assert_eq!(events[0].created_at, events[1].created_at);
    assert_eq!(
        events[1].payload,
        Payload::Presence {
            clients: ClientSet::MOBILE
        }
    );
}

#[test]
fn created_at_takes_every_form_of_an_instant_alike() {
    let body = json!([
        with(json!({"clients": [], "createdAt": "2026-11-01T00:00:00Z"})),
        with(json!({"clients": [], "createdAt": "2026-11-01T01:00:00+01:00"})),
        with(json!({"clients": [], "createdAt": 1_793_491_200_000_i64})),
        with(json!({"clients": [], "createdAt": "1793491200000"})),
    ]);
    let events =
        parse_events_at(EventKind::Presence, body, now(), DEFAULT_MAX_FUTURE_SKEW).unwrap();
    assert!(events.iter().all(|e| e.created_at == events[0].created_at));
    assert_eq!(events[0].created_at.timestamp_millis(), 1_793_491_200_000);
}

#[test]
fn created_at_may_lie_at_most_the_skew_in_the_future() {
    let skew = std::time::Duration::from_secs(300);
    let at = |ms: i64| with(json!({"clients": [], "createdAt": ms}));
    let latest = now().timestamp_millis() + 300_000;
    assert!(parse_events_at(EventKind::Presence, at(latest), now(), skew).is_ok());
    let body = json!([at(latest - 1), at(latest + 1)]);
    let err = parse_events_at(EventKind::Presence, body, now(), skew).unwrap_err();
    assert_eq!((err.index, err.field.as_str()), (1, "createdAt"));
    assert!(err.message.contains("2026-11-20T12:05:00.000Z"), "{err}");
    // Year 9999 is a valid instant, but not a plausible time for an event.
    let far = with(json!({"clients": [], "createdAt": "9999-12-31T23:59:59Z"}));
    let err = parse_events_at(EventKind::Presence, far, now(), skew).unwrap_err();
    assert_eq!(err.field, "createdAt");
    // The skew is configurable: none at all refuses the next millisecond.
    let next = at(now().timestamp_millis() + 1);
    assert!(parse_events_at(EventKind::Presence, next, now(), std::time::Duration::ZERO).is_err());
}

#[test]
fn ids_are_strings_never_numbers() {
    for field in ["guildId", "userId", "channelId"] {
        let mut body = with(json!({"channelId": "3", "channel": "general"}));
        body[field] = json!(123);
        let err =
            parse_events_at(EventKind::Typing, body, now(), DEFAULT_MAX_FUTURE_SKEW).unwrap_err();
        assert_eq!(err.field, field);
        assert_eq!(err.message, "must be a string of 1-20 decimal digits");
    }
}

#[test]
fn rejections_name_the_event_and_field() {
    let typing = |overrides: Value| {
        let mut body = with(json!({"channelId": "3", "channel": "general"}));
        body.as_object_mut()
            .unwrap()
            .extend(overrides.as_object().unwrap().clone());
        body
    };
    let cases = [
        (
            EventKind::Typing,
            typing(json!({"userId": "12a"})),
            "event 0: field \"userId\": must be 1-20 decimal digits",
        ),
        (
            EventKind::Typing,
            typing(json!({"guildId": "123456789012345678901"})),
            "event 0: field \"guildId\": must be 1-20 decimal digits",
        ),
        (
            EventKind::Typing,
            typing(json!({"channelId": 3})),
            "event 0: field \"channelId\": must be a string of 1-20 decimal digits",
        ),
        (
            EventKind::Typing,
            typing(json!({"username": ""})),
            "event 0: field \"username\": must not be empty",
        ),
        (
            EventKind::Typing,
            typing(json!({"username": "x".repeat(101)})),
            "event 0: field \"username\": must be at most 100 characters",
        ),
        (
            EventKind::Typing,
            typing(json!({"username": ["ann"]})),
            "event 0: field \"username\": must be a string",
        ),
        (
            EventKind::Typing,
            typing(json!({"createdAt": "yesterday"})),
            "event 0: field \"createdAt\": must be an RFC 3339 timestamp or epoch milliseconds (an integer or a string of digits), from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z",
        ),
        (
            EventKind::Typing,
            typing(json!({"typo": 1})),
            "event 0: field \"typo\": unknown field",
        ),
        (
            EventKind::Typing,
            with(json!({"channel": "general"})),
            "event 0: field \"channelId\": is required",
        ),
        (
            EventKind::Message,
            typing(json!({"content": "x".repeat(4001)})),
            "event 0: field \"content\": must be at most 4000 characters",
        ),
        (
            EventKind::Message,
            typing(json!({"content": "a\u{0}b"})),
            "event 0: field \"content\": must not contain NUL characters",
        ),
        (
            EventKind::Presence,
            with(json!({"clients": ["tv"]})),
            "event 0: field \"clients\": unknown client \"tv\" (expected desktop, mobile or web)",
        ),
        (
            EventKind::Presence,
            with(json!({"clients": "web"})),
            "event 0: field \"clients\": must be an array",
        ),
        (
            EventKind::RoleChange,
            with(json!({"addedRoles": [1]})),
            "event 0: field \"addedRoles\": must be an array of strings",
        ),
        (
            EventKind::RoleChange,
            with(json!({"addedRoles": vec!["r"; 251]})),
            "event 0: field \"addedRoles\": at most 250 roles",
        ),
        (
            EventKind::MemberJoin,
            with(json!({"accountAgeDays": -1})),
            "event 0: field \"accountAgeDays\": must be a non-negative integer",
        ),
        (
            EventKind::MemberJoin,
            with(json!({"accountAgeDays": 1.5})),
            "event 0: field \"accountAgeDays\": must be a non-negative integer",
        ),
        (
            EventKind::MemberJoin,
            json!("hello"),
            "event 0: field \"(body)\": expected a JSON object or an array of objects",
        ),
        (
            EventKind::MemberJoin,
            json!([]),
            "event 0: field \"(body)\": the batch is empty",
        ),
        (
            EventKind::MemberJoin,
            json!([with(json!({"accountAgeDays": 1})), 5]),
            "event 1: field \"(body)\": expected a JSON object",
        ),
    ];
    for (kind, body, expected) in cases {
        assert_eq!(error(kind, body), expected);
    }
}
