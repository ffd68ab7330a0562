//! The six analytics on small hand-computed fixtures, on SQLite and
//! PostgreSQL: every check runs on both and expects the same JSON.

mod common;

use chrono::Duration;
use common::*;
use serde_json::json;
use spywatcher_analytics::{AnalyticsKind::*, Since};

fn since(t: chrono::DateTime<chrono::Utc>) -> Option<Since> {
    Some(Since::from(t))
}

#[tokio::test]
async fn ghosts_rank_typing_over_messages_with_ties_by_user_id() {
    let mut events = Vec::new();
    // alice types 3 times (renamed in between), never sends: 3 / 1.
    events.extend(repeat(2, days_ago(5), |t| {
        typing(GUILD, "1", "alice_old", "10", t)
    }));
    events.push(typing(GUILD, "1", "alice", "10", days_ago(1)));
    // bob: 4 typing, 1 message (his latest event, under a new name): 4 / 2.
    events.extend(repeat(4, days_ago(3), |t| {
        typing(GUILD, "2", "bob", "10", t)
    }));
    events.push(message(GUILD, "2", "bobby", "10", days_ago(2)));
    // carol ties with bob at 2.0; "2" < "3".
    events.extend(repeat(2, days_ago(3), |t| {
        typing(GUILD, "3", "carol", "20", t)
    }));
    // dave only writes: not a ghost.
    events.extend(repeat(5, days_ago(3), |t| {
        message(GUILD, "4", "dave", "10", t)
    }));
    // "10" and "9" tie at 1.0: string order puts "10" first.
    events.push(typing(GUILD, "9", "ivy", "10", days_ago(3)));
    events.push(typing(GUILD, "10", "erin", "10", days_ago(3)));
    // Another guild's events do not count.
    events.extend(repeat(10, days_ago(3), |t| {
        typing(OTHER_GUILD, "4", "dave", "10", t)
    }));
    events.extend(repeat(3, days_ago(3), |t| {
        message(OTHER_GUILD, "1", "alice", "10", t)
    }));
    // Other kinds are ignored.
    events.push(presence(GUILD, "4", "dave", &["web"], days_ago(1)));

    let b = both_with(&events).await;
    let row = |id: &str, name: &str, t: i64, m: i64, s: f64| json!({"userId": id, "username": name, "typingCount": t, "messageCount": m, "ghostScore": s});
    check(
        &b,
        Ghosts,
        None,
        json!([
            row("1", "alice", 3, 0, 3.0),
            row("2", "bobby", 4, 1, 2.0),
            row("3", "carol", 2, 0, 2.0),
            row("10", "erin", 1, 0, 1.0),
            row("9", "ivy", 1, 0, 1.0),
        ]),
    )
    .await;
    // since drops everything older than 2 days: alice keeps one typing
    // event; bob keeps only his message, and a user without typing is no
    // ghost.
    check(
        &b,
        Ghosts,
        since(days_ago(2)),
        json!([row("1", "alice", 1, 0, 1.0)]),
    )
    .await;
}

#[tokio::test]
async fn ghost_score_is_fractional_and_top_100() {
    let mut events = Vec::new();
    // 150 ghosts: user i types i+1 times and sends 2 messages.
    for i in 0..150 {
        let id = (1000 + i).to_string();
        events.extend(repeat(i + 1, days_ago(1), |t| {
            typing(GUILD, &id, "g", "10", t)
        }));
        events.extend(repeat(2, days_ago(2), |t| {
            message(GUILD, &id, "g", "10", t)
        }));
    }
    let b = both_with(&events).await;
    assert_eq!(row_count(&b, Ghosts).await, 100);
    for x in &b {
        let rows = x
            .store
            .analytics(Ghosts, &guild(GUILD), None, now())
            .await
            .unwrap()
            .to_json();
        assert_eq!(rows[0]["userId"], "1149", "{}", x.name);
        assert_eq!(rows[0]["ghostScore"], 50.0, "{}", x.name);
        assert_eq!(rows[99]["userId"], "1050", "{}", x.name);
        assert!((rows[99]["ghostScore"].as_f64().unwrap() - 51.0 / 3.0).abs() < 1e-12);
    }
}

#[tokio::test]
async fn lurkers_are_present_but_silent_in_this_guild() {
    let mut events = Vec::new();
    events.extend(repeat(6, days_ago(1), |t| {
        presence(GUILD, "1", "ann", &["web"], t)
    }));
    events.extend(repeat(5, days_ago(1), |t| {
        presence(GUILD, "2", "ben", &["web"], t)
    }));
    // Typing or writing (even long ago) disqualifies.
    events.extend(repeat(2, days_ago(1), |t| {
        presence(GUILD, "3", "cid", &["web"], t)
    }));
    events.push(typing(GUILD, "3", "cid", "10", days_ago(20)));
    events.extend(repeat(2, days_ago(1), |t| {
        presence(GUILD, "4", "dot", &["web"], t)
    }));
    events.push(message(GUILD, "4", "dot", "10", days_ago(1)));
    // A tie at 2: "5" before "6".
    events.extend(repeat(2, days_ago(1), |t| {
        presence(GUILD, "6", "fay", &["web"], t)
    }));
    events.extend(repeat(2, days_ago(1), |t| {
        presence(GUILD, "5", "eve", &["mobile"], t)
    }));
    // Writing in another guild does not stop being a lurker here, and
    // presence in another guild does not count here.
    events.push(presence(GUILD, "7", "gus", &["web"], days_ago(1)));
    events.push(message(OTHER_GUILD, "7", "gus", "10", days_ago(1)));
    events.extend(repeat(3, days_ago(1), |t| {
        presence(OTHER_GUILD, "1", "ann", &["web"], t)
    }));
    // Role changes and joins neither count nor disqualify.
    events.push(role_change(GUILD, "7", "gus", days_ago(1)));
    events.push(member_join(GUILD, "7", "gus", days_ago(1)));

    let b = both_with(&events).await;
    let row = |id: &str, name: &str, n: i64, s: i64| json!({"userId": id, "username": name, "presenceCount": n, "lurkerScore": s});
    check(
        &b,
        Lurkers,
        None,
        json!([
            row("1", "ann", 6, 1),
            row("2", "ben", 5, 1),
            row("5", "eve", 2, 0),
            row("6", "fay", 2, 0),
            row("7", "gus", 1, 0),
        ]),
    )
    .await;
    // With since after cid's typing, cid is a lurker again.
    let got = b[0]
        .store
        .analytics(Lurkers, &guild(GUILD), since(days_ago(10)), now())
        .await
        .unwrap()
        .to_json();
    assert!(got.as_array().unwrap().iter().any(|r| r["userId"] == "3"));
    check(&b, Lurkers, since(days_ago(10)), got).await;
}

#[tokio::test]
async fn heatmap_groups_by_user_name_and_channel() {
    let mut events = Vec::new();
    events.extend(repeat(3, days_ago(1), |t| {
        typing(GUILD, "2", "bob", "10", t)
    }));
    events.extend(repeat(3, days_ago(1), |t| {
        typing(GUILD, "1", "alice", "10", t)
    }));
    events.push(typing(GUILD, "1", "alice", "20", days_ago(1)));
    events.push(typing(GUILD, "1", "alice2", "10", days_ago(1)));
    events.push(message(GUILD, "1", "alice", "10", days_ago(1)));
    events.extend(repeat(9, days_ago(1), |t| {
        typing(OTHER_GUILD, "1", "alice", "10", t)
    }));
    events.push(typing(GUILD, "3", "old", "10", days_ago(30)));

    let b = both_with(&events).await;
    let row = |id: &str, name: &str, ch: &str, n: i64| json!({"userId": id, "username": name, "channelId": ch, "channel": format!("channel-{ch}"), "count": n});
    check(
        &b,
        Heatmap,
        since(days_ago(7)),
        json!([
            row("1", "alice", "10", 3),
            row("2", "bob", "10", 3),
            // Ties: userId, then channelId, then username.
            row("1", "alice2", "10", 1),
            row("1", "alice", "20", 1),
        ]),
    )
    .await;
    assert_eq!(row_count(&b, Heatmap).await, 5);
}

#[tokio::test]
async fn heatmap_is_top_500() {
    let events: Vec<_> = (0..600)
        .map(|i| {
            typing(
                GUILD,
                &(i % 30).to_string(),
                "u",
                &(i / 30 + 1).to_string(),
                days_ago(1),
            )
        })
        .collect();
    let b = both_with(&events).await;
    assert_eq!(row_count(&b, Heatmap).await, 500);
}

#[tokio::test]
async fn roles_count_changes_per_user_top_100() {
    let mut events = Vec::new();
    events.extend(repeat(3, days_ago(1), |t| {
        role_change(GUILD, "1", "ann", t)
    }));
    events.push(role_change(GUILD, "2", "ben", days_ago(1)));
    events.extend(repeat(2, days_ago(1), |t| {
        role_change(GUILD, "3", "cid", t)
    }));
    events.extend(repeat(5, days_ago(1), |t| {
        role_change(OTHER_GUILD, "2", "ben", t)
    }));
    events.push(role_change(GUILD, "3", "cid", days_ago(40)));
    let b = both_with(&events).await;
    let row = |id: &str, name: &str, n: i64, s: i64| json!({"userId": id, "username": name, "roleChangeCount": n, "roleDriftScore": s});
    check(
        &b,
        Roles,
        None,
        json!([
            row("1", "ann", 3, 1),
            row("3", "cid", 3, 1),
            row("2", "ben", 1, 0)
        ]),
    )
    .await;
    check(
        &b,
        Roles,
        since(days_ago(30)),
        json!([
            row("1", "ann", 3, 1),
            row("3", "cid", 2, 1),
            row("2", "ben", 1, 0)
        ]),
    )
    .await;

    let many: Vec<_> = (0..120)
        .map(|i| role_change(GUILD, &i.to_string(), "u", days_ago(1)))
        .collect();
    let b = both_with(&many).await;
    assert_eq!(row_count(&b, Roles).await, 100);
}

#[tokio::test]
async fn clients_compare_the_two_weeks_at_their_edges() {
    let ms = Duration::milliseconds(1);
    let events = vec![
        // 1: desktop -> desktop+mobile: reported.
        presence(GUILD, "1", "ann", &["desktop"], days_ago(10)),
        presence(GUILD, "1", "ann", &["desktop", "mobile"], days_ago(1)),
        // 2: the recent set is smaller: not reported.
        presence(GUILD, "2", "ben", &["desktop", "web"], days_ago(10)),
        presence(GUILD, "2", "ben", &["mobile"], days_ago(1)),
        // 3: old window starts at now-14d inclusive, new at now-7d inclusive.
        presence(GUILD, "3", "cid", &["web"], days_ago(14)),
        presence(GUILD, "3", "cid2", &["web", "mobile"], days_ago(7)),
        // 4: just before the old window: not present in both.
        presence(GUILD, "4", "dot", &["desktop"], days_ago(14) - ms),
        presence(GUILD, "4", "dot", &["desktop", "web"], days_ago(1)),
        // 5: the recent presence is after now: outside the new window.
        presence(GUILD, "5", "eve", &["desktop"], days_ago(8)),
        presence(GUILD, "5", "eve", &["desktop", "web"], now() + ms),
        // 6: old window ends just before now-7d; new window ends at now inclusive.
        presence(GUILD, "6", "fay", &["mobile"], days_ago(7) - ms),
        presence(GUILD, "6", "fay", &["mobile", "web"], now()),
        // 7: same size, different sets: not reported.
        presence(GUILD, "7", "gus", &["desktop"], days_ago(10)),
        presence(GUILD, "7", "gus", &["web"], days_ago(9)),
        presence(GUILD, "7", "gus", &["desktop", "mobile"], days_ago(1)),
        // 8: the recent presence is in another guild.
        presence(GUILD, "8", "hal", &["desktop"], days_ago(10)),
        presence(OTHER_GUILD, "8", "hal", &["desktop", "mobile"], days_ago(1)),
        // 9: an empty client set in the old window still counts as present.
        presence(GUILD, "9", "ivy", &[], days_ago(10)),
        presence(GUILD, "9", "ivy", &["web"], days_ago(1)),
    ];
    let b = both_with(&events).await;
    let row = |id: &str, name: &str, old: &[&str], new: &[&str]| json!({"userId": id, "username": name, "oldClients": old, "newClients": new, "clientDriftScore": 1});
    check(
        &b,
        Clients,
        None,
        json!([
            row("1", "ann", &["desktop"], &["desktop", "mobile"]),
            row("3", "cid2", &["web"], &["mobile", "web"]),
            row("6", "fay", &["mobile"], &["mobile", "web"]),
            row("9", "ivy", &[], &["web"]),
        ]),
    )
    .await;
    // since narrows the old window to [now-9d, now-7d): 1, 3 and 9 lose
    // their old presence; 7 keeps only web there, so his new set is larger.
    check(
        &b,
        Clients,
        since(days_ago(9)),
        json!([
            row("6", "fay", &["mobile"], &["mobile", "web"]),
            row("7", "gus", &["web"], &["desktop", "mobile"]),
        ]),
    )
    .await;
}

#[tokio::test]
async fn shifts_flag_message_drops_and_typing_spikes() {
    let ms = Duration::milliseconds(1);
    let mut events = Vec::new();
    // 1: messages only in the old week: drop.
    events.extend(repeat(3, days_ago(10), |t| {
        message(GUILD, "1", "ann", "10", t)
    }));
    // 2: typing 5 -> 11 is a spike; messages in both weeks: no drop.
    events.extend(repeat(5, days_ago(10), |t| {
        typing(GUILD, "2", "ben", "10", t)
    }));
    events.extend(repeat(11, days_ago(1), |t| {
        typing(GUILD, "2", "ben", "10", t)
    }));
    events.push(message(GUILD, "2", "ben", "10", days_ago(10)));
    events.push(message(GUILD, "2", "ben", "10", days_ago(1)));
    // 3: 5 -> 10 is not more than double.
    events.extend(repeat(5, days_ago(10), |t| {
        typing(GUILD, "3", "cid", "10", t)
    }));
    events.extend(repeat(10, days_ago(1), |t| {
        typing(GUILD, "3", "cid", "10", t)
    }));
    // 4: 4 -> 20: too little old typing.
    events.extend(repeat(4, days_ago(10), |t| {
        typing(GUILD, "4", "dot", "10", t)
    }));
    events.extend(repeat(20, days_ago(1), |t| {
        typing(GUILD, "4", "dot", "10", t)
    }));
    // 5: both flags.
    events.extend(repeat(2, days_ago(10), |t| {
        message(GUILD, "5", "eve", "10", t)
    }));
    events.extend(repeat(6, days_ago(10), |t| {
        typing(GUILD, "5", "eve", "10", t)
    }));
    events.extend(repeat(13, days_ago(1), |t| {
        typing(GUILD, "5", "eve2", "10", t)
    }));
    // 6: before both windows: absent.
    events.push(message(GUILD, "6", "fay", "10", days_ago(14) - ms));
    // 7: a message at exactly now-14d is in the old window: drop.
    events.push(message(GUILD, "7", "gus", "10", days_ago(14)));
    // 8: a message at exactly now-7d is in the new window: no drop.
    events.push(message(GUILD, "8", "hal", "10", days_ago(7)));
    // 9: presence does not count; 10: another guild does not count.
    events.push(presence(GUILD, "9", "ivy", &["web"], days_ago(1)));
    events.extend(repeat(3, days_ago(10), |t| {
        message(OTHER_GUILD, "10", "jo", "10", t)
    }));

    let b = both_with(&events).await;
    let row = |id: &str, name: &str, drop: bool, spike: bool| {
        json!({"userId": id, "username": name, "messageDrop": drop, "typingSpike": spike,
               "behaviorShiftScore": i64::from(drop) + i64::from(spike)})
    };
    check(
        &b,
        Shifts,
        None,
        json!([
            row("5", "eve2", true, true),
            row("1", "ann", true, false),
            row("2", "ben", false, true),
            row("7", "gus", true, false),
            row("3", "cid", false, false),
            row("4", "dot", false, false),
            row("8", "hal", false, false),
        ]),
    )
    .await;
    // since after the old week: no old events, no flags.
    check(
        &b,
        Shifts,
        since(days_ago(7)),
        json!([
            row("2", "ben", false, false),
            row("3", "cid", false, false),
            row("4", "dot", false, false),
            row("5", "eve2", false, false),
            row("8", "hal", false, false),
        ]),
    )
    .await;

    let many: Vec<_> = (0..250)
        .map(|i| message(GUILD, &i.to_string(), "u", "10", days_ago(1)))
        .collect();
    let b = both_with(&many).await;
    assert_eq!(row_count(&b, Shifts).await, 200);
}

#[tokio::test]
async fn a_guild_without_events_has_empty_analytics() {
    let events = vec![
        typing(OTHER_GUILD, "1", "ann", "10", days_ago(1)),
        presence(OTHER_GUILD, "1", "ann", &["web"], days_ago(1)),
        member_join(GUILD, "2", "ben", days_ago(1)),
    ];
    let b = both_with(&events).await;
    for kind in spywatcher_analytics::AnalyticsKind::ALL {
        check(&b, *kind, None, json!([])).await;
    }
}

#[tokio::test]
async fn the_latest_username_wins_and_equal_times_go_to_the_last_inserted() {
    let t = days_ago(1);
    let events = vec![
        role_change(GUILD, "1", "first", t),
        role_change(GUILD, "1", "second", t),
        role_change(GUILD, "1", "older", t - Duration::milliseconds(1)),
        // A later event of a kind the analytics does not count is ignored.
        presence(GUILD, "1", "elsewhere", &["web"], now()),
    ];
    let b = both_with(&events).await;
    check(
        &b,
        Roles,
        None,
        json!([{"userId": "1", "username": "second", "roleChangeCount": 3, "roleDriftScore": 1}]),
    )
    .await;
}
