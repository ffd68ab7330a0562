//! The dashboard (`/`) and the API reference (`/docs`) in a real headless
//! Chromium (issue 13): sign-in (a wrong token says so), the cache's
//! figures and the analytics tables, both changing with traffic and with an
//! ingested event, a tag invalidated through its button, a burst of pushes,
//! and no console error; on the embedded cache and on Redis.
//!
//! With `SPYWATCHER_SCREENSHOTS=DIR` it saves the screenshots the README
//! shows (desktop and narrow window) into DIR.

use std::time::Duration;

use serde_json::json;
use spywatcher_analytics::EventKind;
use spywatcher_testkit::browser::{Browser, By};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

/// The text of the stat card labelled `label`.
fn card(label: &str) -> String {
    format!(
        "const c = document.querySelector('[data-stat=\"{label}\"] b'); return c ? c.textContent : null;"
    )
}

/// Rows rendered in the table of analytics `kind`.
fn rows(kind: &str) -> String {
    format!("return document.querySelectorAll('#table-{kind} tbody tr').length;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_the_cache_and_analytics_live_and_acts() {
    for backend in [Backend::Embedded, Backend::Redis] {
        dashboard_on(backend).await;
    }
}

async fn dashboard_on(backend: Backend) {
    let env = TestEnv::on(Db::Sqlite, backend).await;
    let mut settings = env.settings();
    // Pushes as often as 10 a second per analytics, for the burst below.
    settings.ws_push_interval = Duration::from_millis(100);
    let app = env.spawn_with(settings).await;
    seed(&app.store).await;
    let browser = Browser::start(1280, 1000).await.expect("headless Chromium");
    let page = |path: &str| format!("{}{path}", app.address);

    // A wrong token: an error, not an empty page.
    browser.driver.goto(page("/")).await.unwrap();
    browser
        .wait_for(
            "the sign-in form",
            "return !document.getElementById('login').hidden;",
            WAIT,
        )
        .await
        .unwrap();
    type_token(&browser, "not-a-token-of-this-server").await;
    browser
        .wait_for(
            "the wrong token's error",
            "return document.getElementById('login-error').textContent.includes('not valid');",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return document.getElementById('app').hidden;")
            .await
            .unwrap(),
        json!(true)
    );
    assert!(
        !browser
            .driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("token"),
        "the token never goes into the address"
    );
    browser.console().await.unwrap(); // the 401 itself is logged: not a page error

    // The admin token: the cache's figures and the six tables.
    type_token(&browser, ADMIN).await;
    browser
        .wait_for(
            "the hit rate",
            "return !!document.querySelector('[data-stat=\"hit rate\"] b');",
            WAIT,
        )
        .await
        .unwrap();
    for kind in ["ghosts", "lurkers", "heatmap", "roles", "shifts"] {
        browser
            .wait_for(
                &format!("{kind} rows"),
                &format!("return ({})() > 0;", fn_of(&rows(kind))),
                WAIT,
            )
            .await
            .unwrap();
    }
    browser
        .wait_for(
            "the heatmap chart",
            "return document.querySelectorAll('#heatmap-chart rect').length > 0;",
            WAIT,
        )
        .await
        .unwrap();
    browser
        .wait_for(
            "the live connection",
            "return document.getElementById('connection').textContent === 'live';",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval("return sessionStorage.getItem('spywatcher.token');")
            .await
            .unwrap(),
        json!(ADMIN),
        "kept in the tab's session storage"
    );

    // Traffic: the hit counters move.
    let guild = browser
        .eval("return document.getElementById('guild').value;")
        .await
        .unwrap();
    let guild: spywatcher_analytics::GuildId = guild.as_str().unwrap().parse().unwrap();
    let hits_label = if backend == Backend::Embedded {
        "hits L1"
    } else {
        "hits Redis"
    };
    let before = browser.eval(&card(hits_label)).await.unwrap();
    let l1_before = browser.eval(&card("hits L1")).await.unwrap();
    for _ in 0..20 {
        app.analytics("ghosts", &guild).await;
    }
    browser
        .wait_for(
            "the hit counters after traffic",
            &format!(
                "const now = [({})(), ({})()]; return JSON.stringify(now) !== JSON.stringify([{before}, {l1_before}]);",
                fn_of(&card(hits_label)),
                fn_of(&card("hits L1"))
            ),
            WAIT,
        )
        .await
        .unwrap();
    let points = browser
        .eval("return document.querySelector('#hit-chart path.line').getAttribute('d').split('L').length;")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = browser
        .eval("return document.querySelector('#hit-chart path.line').getAttribute('d').split('L').length;")
        .await
        .unwrap();
    assert!(
        later.as_u64() > points.as_u64(),
        "the chart grows: {points} then {later}"
    );

    // The insights: a row per analytics type with its reads, and the
    // suggestions list (none yet: too little evidence).
    browser
        .wait_for(
            "the insights table",
            "const rows = [...document.querySelectorAll('#insights tbody tr')]; \
             return rows.length === 6 && rows.some(r => Number(r.children[1].textContent.replace(/,/g, '')) > 0) \
             && document.querySelector('#suggestions li') !== null \
             && document.querySelectorAll('#busiest tbody tr').length > 0;",
            WAIT,
        )
        .await
        .unwrap();

    // An event: its push reaches the tables (a lurker who types is no
    // longer one).
    let user = a_lurker(&app, &guild).await;
    let lurkers = json(app.analytics("lurkers", &guild).await).await;
    let lurkers = lurkers.as_array().unwrap().len();
    let stored = app
        .post_events("typing", event(EventKind::Typing, &guild, &user))
        .await;
    assert_eq!(stored.status().as_u16(), 201);
    browser
        .wait_for(
            "the pushed analytics",
            "return document.querySelector('#table-heatmap .origin').textContent.includes('pushed');",
            WAIT,
        )
        .await
        .unwrap();
    browser
        .wait_for(
            "the lurker gone from the lurkers",
            &format!(
                "return document.querySelector('#table-lurkers .origin').textContent.startsWith('{} rows · pushed');",
                lurkers - 1
            ),
            WAIT,
        )
        .await
        .unwrap();

    // Sorting: a click on a column orders by it.
    browser
        .eval("document.querySelector('#table-ghosts th[data-column=\"messageCount\"]').click(); return true;")
        .await
        .unwrap();
    browser
        .wait_for(
            "ghosts sorted by messages",
            "const cells = [...document.querySelectorAll('#table-ghosts tbody tr td:nth-child(3)')].map(c => Number(c.textContent.replace(/,/g, ''))); \
             return cells.length > 1 && cells.every((v, i) => i === 0 || cells[i - 1] >= v) && cells[0] > cells[cells.length - 1];",
            WAIT,
        )
        .await
        .unwrap();

    // Invalidate a tag through its button, after its confirmation.
    let tag = format!("guild:{}", guild.as_str());
    let input = browser.driver.find(By::Id("tag")).await.unwrap();
    input.send_keys(&tag).await.unwrap();
    browser
        .driver
        .find(By::Css("#invalidate-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            "the confirmation",
            "return !document.getElementById('confirm').hidden;",
            WAIT,
        )
        .await
        .unwrap();
    browser
        .driver
        .find(By::Id("confirm-yes"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            "the invalidation's answer",
            &format!("return document.getElementById('answer').textContent.includes('\"tag\": \"{tag}\"');"),
            WAIT,
        )
        .await
        .unwrap();
    let answer = browser
        .eval("return document.getElementById('answer').textContent;")
        .await
        .unwrap();
    assert!(answer.as_str().unwrap().starts_with("200"), "{answer}");
    assert_eq!(
        header(&app.analytics("ghosts", &guild).await, "x-cache"),
        "miss",
        "the button invalidated the guild's entries"
    );

    // Ten events a second for three seconds, each pushing the analytics it
    // changed: the page keeps answering (its event loop's longest stall is
    // measured in the page; the pushes are counted as they arrive).
    let lag = "window.__lag = 0; window.__last = performance.now(); \
               window.__timer = setInterval(() => { const now = performance.now(); \
               window.__lag = Math.max(window.__lag, now - window.__last - 50); window.__last = now; }, 50); \
               window.__pushes = 0; const push = window.onPush; \
               window.onPush = (m) => { if (m.type === 'analytics') window.__pushes++; push(m); }; return true;";
    browser.eval(lag).await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..30 {
        tick.tick().await;
        let (kind, path) = match i % 2 {
            0 => (EventKind::Typing, "typing"),
            _ => (EventKind::Message, "messages"),
        };
        let response = app
            .post_events(path, event(kind, &guild, &format!("{}", 900 + i)))
            .await;
        assert_eq!(response.status().as_u16(), 201);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let worst = browser
        .eval("clearInterval(window.__timer); return window.__lag;")
        .await
        .unwrap();
    let pushes = browser.eval("return window.__pushes;").await.unwrap();
    eprintln!(
        "{backend:?}: {pushes} analytics pushes in 4 s; longest stall of the page's event loop: {worst} ms"
    );
    assert!(
        pushes.as_u64() >= Some(40),
        "at least 10 pushes a second: {pushes}"
    );
    assert!(
        worst.as_f64().unwrap() < 1000.0,
        "the page froze for {worst} ms"
    );

    // No console error anywhere on the way.
    let errors: Vec<(String, String)> = browser
        .console()
        .await
        .unwrap()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "{backend:?}: console errors {errors:?}");

    if let Ok(dir) = std::env::var("SPYWATCHER_SCREENSHOTS") {
        screenshots(&browser, &dir, backend).await;
    }

    // The API reference.
    browser.driver.goto(page("/docs")).await.unwrap();
    browser
        .wait_for(
            "the rendered API reference",
            "return document.querySelectorAll('section.op').length >= 10 && document.body.textContent.includes('/api/analytics/{type}');",
            WAIT,
        )
        .await
        .unwrap();
    let errors: Vec<_> = browser
        .console()
        .await
        .unwrap()
        .into_iter()
        .filter(|(l, _)| l == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "/docs: console errors {errors:?}");

    browser.quit().await;
    app.stop().await;
}

/// A function expression of a script body, to call inside another script.
fn fn_of(body: &str) -> String {
    format!("() => {{ {body} }}")
}

async fn type_token(browser: &Browser, token: &str) {
    let input = browser.driver.find(By::Id("token")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    browser
        .driver
        .find(By::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn screenshots(browser: &Browser, dir: &str, backend: Backend) {
    if backend != Backend::Embedded {
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, width, height) in [("desktop", 1400, 1300), ("narrow", 420, 1600)] {
        let driver = &browser.driver;
        driver.set_window_rect(0, 0, width, height).await.unwrap();
        browser
            .eval("window.scrollTo(0, 0); return true;")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let file = std::path::Path::new(dir).join(format!("dashboard-{name}.png"));
        driver.screenshot(&file).await.unwrap();
    }
    browser
        .driver
        .set_window_rect(0, 0, 1280, 1000)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_come_with_a_policy_of_their_own_origin_and_guilds_need_a_read_token() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let mut guilds = seed(&app.store).await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
        ("/docs", "text/html"),
        ("/docs.js", "text/javascript"),
    ] {
        let response = app.get(path, None).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert!(
            header(&response, "content-type").starts_with(content_type),
            "{path}"
        );
        let policy = header(&response, "content-security-policy");
        assert!(
            policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
            "{path}: {policy}"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    }
    assert_error(app.get("/dashboard.map", None).await, 404).await;

    assert_error(app.get("/api/guilds", None).await, 401).await;
    assert_error(app.get("/api/guilds", Some(INGEST)).await, 403).await;
    let listed = json(app.get("/api/guilds", Some(API)).await).await;
    guilds.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let expected: Vec<_> = guilds
        .iter()
        .map(|g| json!({ "guildId": g.as_str() }))
        .collect();
    assert_eq!(listed, json!(expected));
    let stats = cache_stats(&app).await;
    assert_eq!(stats["journalBacklog"], json!(0), "{stats}");
    app.stop().await;
}
