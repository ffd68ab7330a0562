//! SPEC 2.5, row by row: gateway events (built as Discord sends them, and
//! parsed by twilight as the shard parses them) and what they become.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use spywatcher_analytics::{ClientSet, Event, EventKind, Payload};
use spywatcher_gateway::Mapper;
use spywatcher_gateway::mapping::account_age_days;
use spywatcher_testkit::gateway::payload::{self, user};
use twilight_gateway::EventTypeFlags;
use twilight_model::gateway::event::Event as GatewayEvent;

const GUILD: u64 = 800_000_000_000_000_001;
const OTHER_GUILD: u64 = 800_000_000_000_000_002;
const GENERAL: u64 = 810_000_000_000_000_001;
const MOD: u64 = 820_000_000_000_000_001;
const VIP: u64 = 820_000_000_000_000_002;
const ADMIN: u64 = 820_000_000_000_000_003;
const ANN: u64 = 830_000_000_000_000_001;
const BOB: u64 = 830_000_000_000_000_002;
const JOINED: &str = "2026-01-01T00:00:00.000000+00:00";

/// A dispatch as the shard receives it, parsed by twilight.
fn gateway(t: &str, d: Value) -> GatewayEvent {
    let frame = json!({ "op": 0, "s": 1, "t": t, "d": d }).to_string();
    twilight_gateway::parse(frame, EventTypeFlags::all())
        .unwrap_or_else(|e| panic!("twilight refused {t}: {e:?}"))
        .unwrap_or_else(|| panic!("{t} not parsed"))
        .into()
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

fn map(mapper: &mut Mapper, t: &str, d: Value) -> Option<Event> {
    mapper.map(&gateway(t, d), received())
}

/// A mapper that has seen the guild: channel `general`, roles mod, vip and
/// admin, and Ann (with the mod role) as a member.
fn mapper_with_guild() -> Mapper {
    let mut mapper = Mapper::new();
    let guild = payload::guild_create(
        GUILD,
        "the guild",
        vec![payload::channel(GUILD, GENERAL, "general")],
        vec![
            payload::role(MOD, "moderator"),
            payload::role(VIP, "vip"),
            payload::role(ADMIN, "admin"),
        ],
        vec![payload::member(user(ANN, "ann"), &[MOD], JOINED)],
    );
    assert_eq!(
        map(&mut mapper, "GUILD_CREATE", guild),
        None,
        "GUILD_CREATE stores nothing"
    );
    mapper
}

fn message(guild: u64, channel: u64, author: Value, content: &str) -> Value {
    payload::message_create(
        900,
        guild,
        channel,
        author,
        content,
        "2026-11-29T10:00:00.123000+00:00",
    )
}

#[test]
fn guild_create_fills_the_names_caches() {
    let mapper = mapper_with_guild();
    let names = mapper.names();
    assert_eq!(names.channel(GUILD, GENERAL), Some("general"));
    assert_eq!(names.role(GUILD, VIP), Some("vip"));
    let ann = names.member(GUILD, ANN).expect("Ann cached");
    assert_eq!(
        (ann.roles.as_slice(), ann.username.as_str()),
        (&[MOD][..], "ann")
    );
    assert_eq!(names.channel(OTHER_GUILD, GENERAL), None);
}

#[test]
fn a_guild_message_becomes_a_message_event() {
    let mut mapper = mapper_with_guild();
    let event = map(
        &mut mapper,
        "MESSAGE_CREATE",
        message(GUILD, GENERAL, user(BOB, "bob"), "hello"),
    )
    .expect("a message");
    assert_eq!(event.kind(), EventKind::Message);
    assert_eq!(event.guild_id.as_str(), GUILD.to_string());
    assert_eq!(event.user_id.as_str(), BOB.to_string());
    assert_eq!(event.username, "bob", "author.username");
    assert_eq!(
        event.created_at,
        DateTime::parse_from_rfc3339("2026-11-29T10:00:00.123Z").unwrap(),
        "the message's timestamp"
    );
    assert_eq!(
        event.payload,
        Payload::Message {
            channel_id: GENERAL.to_string().parse().unwrap(),
            channel: "general".into(),
            content: "hello".into(),
        }
    );
}

#[test]
fn a_message_in_an_unknown_channel_names_it_by_id() {
    let mut mapper = mapper_with_guild();
    let unknown = 810_000_000_000_000_099;
    let event = map(
        &mut mapper,
        "MESSAGE_CREATE",
        message(GUILD, unknown, user(BOB, "bob"), "hi"),
    )
    .unwrap();
    let Payload::Message { channel, .. } = event.payload else {
        panic!("a message")
    };
    assert_eq!(channel, unknown.to_string());
}

#[test]
fn bots_webhooks_and_dms_are_ignored() {
    let mut mapper = mapper_with_guild();
    let by_bot = message(GUILD, GENERAL, payload::bot(BOB, "robot"), "beep");
    assert_eq!(
        map(&mut mapper, "MESSAGE_CREATE", by_bot),
        None,
        "author.bot"
    );
    let webhook = payload::webhook_message_create(
        901,
        GUILD,
        GENERAL,
        840,
        "hook",
        "2026-11-29T10:00:00.000000+00:00",
    );
    assert_eq!(
        map(&mut mapper, "MESSAGE_CREATE", webhook),
        None,
        "webhook_id"
    );
    let dm = payload::dm_message_create(
        902,
        850,
        user(BOB, "bob"),
        "psst",
        "2026-11-29T10:00:00.000000+00:00",
    );
    assert_eq!(map(&mut mapper, "MESSAGE_CREATE", dm), None, "no guild_id");
    let dm_typing = payload::dm_typing_start(850, BOB, 1_790_000_000);
    assert_eq!(
        map(&mut mapper, "TYPING_START", dm_typing),
        None,
        "no guild_id"
    );
    let bot_member = payload::member(payload::bot(BOB, "robot"), &[], JOINED);
    let bot_typing = payload::typing_start(GUILD, GENERAL, BOB, Some(bot_member), 1_790_000_000);
    assert_eq!(
        map(&mut mapper, "TYPING_START", bot_typing),
        None,
        "member.user.bot"
    );
    let bot_presence =
        payload::presence_update(GUILD, payload::bot(BOB, "robot"), "online", &["desktop"]);
    assert_eq!(
        map(&mut mapper, "PRESENCE_UPDATE", bot_presence),
        None,
        "user.bot"
    );
    let bot_update = payload::guild_member_update(GUILD, payload::bot(BOB, "robot"), &[MOD]);
    assert_eq!(
        map(&mut mapper, "GUILD_MEMBER_UPDATE", bot_update),
        None,
        "user.bot"
    );
    let bot_join = payload::guild_member_add(
        GUILD,
        payload::member(payload::bot(BOB, "robot"), &[], JOINED),
    );
    assert_eq!(
        map(&mut mapper, "GUILD_MEMBER_ADD", bot_join),
        None,
        "user.bot"
    );
    assert_eq!(
        mapper.names().member(GUILD, BOB),
        None,
        "a bot is not cached"
    );
}

#[test]
fn other_events_are_ignored() {
    let mut mapper = mapper_with_guild();
    let delete =
        json!({ "id": "903", "channel_id": GENERAL.to_string(), "guild_id": GUILD.to_string() });
    assert_eq!(map(&mut mapper, "MESSAGE_DELETE", delete), None);
}

#[test]
fn typing_takes_its_username_from_the_member_then_the_cache_then_the_id() {
    let mut mapper = mapper_with_guild();
    let with_member = payload::typing_start(
        GUILD,
        GENERAL,
        BOB,
        Some(payload::member(user(BOB, "bob"), &[], JOINED)),
        1_790_000_000,
    );
    let event = map(&mut mapper, "TYPING_START", with_member).expect("typing");
    assert_eq!(event.kind(), EventKind::Typing);
    assert_eq!(event.username, "bob", "member.user.username");
    assert_eq!(
        event.created_at,
        DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        "timestamp, Unix seconds"
    );
    assert_eq!(
        event.payload,
        Payload::Typing {
            channel_id: GENERAL.to_string().parse().unwrap(),
            channel: "general".into()
        }
    );

    let cached = payload::typing_start(GUILD, GENERAL, ANN, None, 1_790_000_001);
    assert_eq!(
        map(&mut mapper, "TYPING_START", cached).unwrap().username,
        "ann",
        "member cache"
    );

    let unknown = payload::typing_start(GUILD, GENERAL, BOB, None, 1_790_000_002);
    assert_eq!(
        map(&mut mapper, "TYPING_START", unknown).unwrap().username,
        BOB.to_string(),
        "the user id"
    );
}

#[test]
fn presence_stores_the_clients_present() {
    let mut mapper = mapper_with_guild();
    let update = payload::presence_update(GUILD, user(BOB, "bob"), "online", &["web", "desktop"]);
    let event = map(&mut mapper, "PRESENCE_UPDATE", update).expect("presence");
    assert_eq!(event.kind(), EventKind::Presence);
    assert_eq!(event.username, "bob", "user.username");
    assert_eq!(event.created_at, received(), "the receive time");
    assert_eq!(
        event.payload,
        Payload::Presence {
            clients: ClientSet::DESKTOP.union(ClientSet::WEB)
        }
    );
    let mobile = payload::presence_update(GUILD, user(BOB, "bob"), "idle", &["mobile"]);
    assert_eq!(
        map(&mut mapper, "PRESENCE_UPDATE", mobile).unwrap().payload,
        Payload::Presence {
            clients: ClientSet::MOBILE
        }
    );
}

#[test]
fn an_offline_presence_or_one_without_desktop_mobile_or_web_stores_nothing() {
    let mut mapper = mapper_with_guild();
    let offline = payload::presence_update(GUILD, user(BOB, "bob"), "offline", &[]);
    assert_eq!(map(&mut mapper, "PRESENCE_UPDATE", offline), None);
    let other_clients =
        payload::presence_update(GUILD, user(BOB, "bob"), "online", &["vr", "embedded"]);
    assert_eq!(map(&mut mapper, "PRESENCE_UPDATE", other_clients), None);
}

#[test]
fn a_presence_with_only_a_user_id_is_stored_with_the_cached_username_else_the_id() {
    let mut mapper = mapper_with_guild();
    let cached =
        payload::presence_update(GUILD, payload::user_id_only(ANN), "online", &["desktop"]);
    assert_eq!(
        map(&mut mapper, "PRESENCE_UPDATE", cached)
            .expect("stored")
            .username,
        "ann"
    );
    let uncached =
        payload::presence_update(GUILD, payload::user_id_only(BOB), "online", &["desktop"]);
    assert_eq!(
        map(&mut mapper, "PRESENCE_UPDATE", uncached)
            .expect("stored")
            .username,
        BOB.to_string()
    );
}

#[test]
fn member_update_reports_only_added_roles_by_name_sorted() {
    let mut mapper = mapper_with_guild();
    let unknown_role = 820_000_000_000_000_099;
    // Ann had [moderator]; now [moderator, vip, admin, unknown].
    let update =
        payload::guild_member_update(GUILD, user(ANN, "ann"), &[MOD, VIP, ADMIN, unknown_role]);
    let event = map(&mut mapper, "GUILD_MEMBER_UPDATE", update).expect("a role change");
    assert_eq!(event.kind(), EventKind::RoleChange);
    assert_eq!(event.created_at, received(), "the receive time");
    assert_eq!(
        event.payload,
        Payload::RoleChange {
            added_roles: vec![unknown_role.to_string(), "admin".into(), "vip".into()],
        },
        "names (the id when unknown), sorted by name"
    );
    assert_eq!(
        mapper.names().member(GUILD, ANN).unwrap().roles.len(),
        4,
        "the cache holds the new list"
    );

    // The same list again: nothing added.
    let same =
        payload::guild_member_update(GUILD, user(ANN, "ann"), &[MOD, VIP, ADMIN, unknown_role]);
    assert_eq!(map(&mut mapper, "GUILD_MEMBER_UPDATE", same), None);
    // A role removed: nothing added.
    let removed = payload::guild_member_update(GUILD, user(ANN, "ann"), &[VIP]);
    assert_eq!(
        map(&mut mapper, "GUILD_MEMBER_UPDATE", removed),
        None,
        "a removal is no role change"
    );
    assert_eq!(mapper.names().member(GUILD, ANN).unwrap().roles, [VIP]);
    // Removed then added back: an addition again.
    let back = payload::guild_member_update(GUILD, user(ANN, "ann"), &[VIP, MOD]);
    assert_eq!(
        map(&mut mapper, "GUILD_MEMBER_UPDATE", back)
            .unwrap()
            .payload,
        Payload::RoleChange {
            added_roles: vec!["moderator".into()]
        }
    );
}

#[test]
fn member_update_of_an_uncached_member_caches_it_without_an_event() {
    let mut mapper = mapper_with_guild();
    let update = payload::guild_member_update(GUILD, user(BOB, "bob"), &[MOD]);
    assert_eq!(map(&mut mapper, "GUILD_MEMBER_UPDATE", update), None);
    assert_eq!(mapper.names().member(GUILD, BOB).unwrap().roles, [MOD]);
    let next = payload::guild_member_update(GUILD, user(BOB, "bob"), &[MOD, VIP]);
    assert_eq!(
        map(&mut mapper, "GUILD_MEMBER_UPDATE", next)
            .unwrap()
            .payload,
        Payload::RoleChange {
            added_roles: vec!["vip".into()]
        }
    );
}

#[test]
fn member_join_takes_the_account_age_from_the_snowflake() {
    let mut mapper = mapper_with_guild();
    // An account created at 2020-01-01T00:00:00Z: 1577836800000 ms, less
    // Discord's epoch, in the top 42 bits; the low 22 bits are anything.
    let created = 1_577_836_800_000u64 - 1_420_070_400_000;
    let newcomer = (created << 22) | 0x2A_F00D;
    let joined_at = "2020-01-11T12:00:00.000000+00:00"; // 10.5 days later
    let member = payload::member(user(newcomer, "newcomer"), &[VIP], joined_at);
    let event = map(
        &mut mapper,
        "GUILD_MEMBER_ADD",
        payload::guild_member_add(GUILD, member),
    )
    .expect("a join");
    assert_eq!(event.kind(), EventKind::MemberJoin);
    assert_eq!(event.username, "newcomer");
    assert_eq!(
        event.created_at,
        DateTime::parse_from_rfc3339("2020-01-11T12:00:00Z").unwrap(),
        "joined_at"
    );
    assert_eq!(
        event.payload,
        Payload::MemberJoin {
            account_age_days: 10
        },
        "whole days, rounded down"
    );
    let cached = mapper
        .names()
        .member(GUILD, newcomer)
        .expect("the member enters the cache");
    assert_eq!(cached.roles, [VIP]);

    assert_eq!(
        account_age_days(
            newcomer,
            DateTime::parse_from_rfc3339("2020-01-01T23:59:59Z")
                .unwrap()
                .into()
        ),
        0
    );
    assert_eq!(
        account_age_days(
            newcomer,
            DateTime::parse_from_rfc3339("2019-12-01T00:00:00Z")
                .unwrap()
                .into()
        ),
        0,
        "a join before the account: 0"
    );
}

#[test]
fn channel_and_role_events_update_the_caches() {
    let mut mapper = mapper_with_guild();
    let random = 810_000_000_000_000_002;
    assert_eq!(
        map(
            &mut mapper,
            "CHANNEL_CREATE",
            payload::channel(GUILD, random, "random")
        ),
        None
    );
    assert_eq!(mapper.names().channel(GUILD, random), Some("random"));
    assert_eq!(
        map(
            &mut mapper,
            "CHANNEL_UPDATE",
            payload::channel(GUILD, random, "off-topic")
        ),
        None
    );
    assert_eq!(mapper.names().channel(GUILD, random), Some("off-topic"));
    let typing = payload::typing_start(GUILD, random, ANN, None, 1_790_000_000);
    let Payload::Typing { channel, .. } = map(&mut mapper, "TYPING_START", typing).unwrap().payload
    else {
        panic!("typing")
    };
    assert_eq!(channel, "off-topic");
    assert_eq!(
        map(
            &mut mapper,
            "CHANNEL_DELETE",
            payload::channel(GUILD, random, "off-topic")
        ),
        None
    );
    assert_eq!(mapper.names().channel(GUILD, random), None);

    let helper = 820_000_000_000_000_004;
    assert_eq!(
        map(
            &mut mapper,
            "GUILD_ROLE_CREATE",
            payload::guild_role(GUILD, payload::role(helper, "helper"))
        ),
        None
    );
    assert_eq!(mapper.names().role(GUILD, helper), Some("helper"));
    assert_eq!(
        map(
            &mut mapper,
            "GUILD_ROLE_UPDATE",
            payload::guild_role(GUILD, payload::role(helper, "helpers"))
        ),
        None
    );
    assert_eq!(mapper.names().role(GUILD, helper), Some("helpers"));
    assert_eq!(
        map(
            &mut mapper,
            "GUILD_ROLE_DELETE",
            payload::guild_role_delete(GUILD, helper)
        ),
        None
    );
    assert_eq!(mapper.names().role(GUILD, helper), None);

    assert_eq!(
        map(
            &mut mapper,
            "GUILD_MEMBER_REMOVE",
            payload::guild_member_remove(GUILD, user(ANN, "ann"))
        ),
        None
    );
    assert_eq!(mapper.names().member(GUILD, ANN), None);
}

#[test]
fn text_the_store_would_refuse_is_cleaned_not_dropped() {
    let mut mapper = mapper_with_guild();
    let long = "x".repeat(5000);
    let event = map(
        &mut mapper,
        "MESSAGE_CREATE",
        message(GUILD, GENERAL, user(BOB, "bo\0b"), &format!("a\0b{long}")),
    )
    .expect("kept");
    assert_eq!(event.username, "bob");
    let Payload::Message { content, .. } = &event.payload else {
        panic!("a message")
    };
    assert!(
        content.starts_with("ab") && content.chars().count() == 4000,
        "{}",
        content.len()
    );
    assert!(event.validate().is_ok());
}

#[test]
fn a_new_guild_create_replaces_channels_and_roles_and_keeps_members_it_omits() {
    let mut mapper = mapper_with_guild();
    let random = 810_000_000_000_000_002;
    let again = payload::guild_create(
        GUILD,
        "the guild",
        vec![payload::channel(GUILD, random, "random")],
        vec![payload::role(VIP, "vip")],
        vec![],
    );
    assert_eq!(map(&mut mapper, "GUILD_CREATE", again), None);
    let names = mapper.names();
    assert_eq!(names.channel(GUILD, GENERAL), None, "no longer listed");
    assert_eq!(names.channel(GUILD, random), Some("random"));
    assert_eq!(names.role(GUILD, MOD), None);
    assert!(
        names.member(GUILD, ANN).is_some(),
        "a large guild's GUILD_CREATE lists only some members"
    );
    let leave = json!({ "id": GUILD.to_string() });
    assert_eq!(map(&mut mapper, "GUILD_DELETE", leave), None);
    assert_eq!(
        mapper.names().member(GUILD, ANN),
        None,
        "the bot left: all gone"
    );
}
