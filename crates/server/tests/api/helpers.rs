//! One way to start what an API test needs: the real application on a free
//! port, a fresh database (SQLite file or PostgreSQL database), and, when the
//! test wants Redis, a private redis-server or a private 3+3 Redis Cluster.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use spywatcher::config::{CacheBackend, Settings};
use spywatcher::startup::Application;
use spywatcher_analytics::{EventKind, EventStore, GeneratorConfig, GuildId, generate_into};
pub use spywatcher_testkit::cluster::RedisCluster;
use spywatcher_testkit::postgres::TestDatabase;
pub use spywatcher_testkit::redis::RedisServer;
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin-token-for-tests-0001";
pub const INGEST: &str = "ingest-token-for-tests-0001";
pub const API: &str = "api-token-for-tests-00000001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const BOTH_DATABASES: [Db; 2] = [Db::Sqlite, Db::Postgres];

enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

/// Where the instances of a test keep their cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In process: no Redis.
    Embedded,
    /// A private redis-server.
    Redis,
    /// A private Redis Cluster of 3 masters and 3 replicas.
    Cluster,
}

/// The Redis set-ups a test of a Redis feature runs on.
pub const REDIS_BACKENDS: [Backend; 2] = [Backend::Redis, Backend::Cluster];

/// A database and (optionally) a Redis or a Redis Cluster, shared by the
/// instances a test starts.
pub struct TestEnv {
    database: Database,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
}

impl TestEnv {
    /// A database, and a private redis-server if `with_redis`.
    pub async fn new(db: Db, with_redis: bool) -> TestEnv {
        let backend = if with_redis {
            Backend::Redis
        } else {
            Backend::Embedded
        };
        TestEnv::on(db, backend).await
    }

    /// A database, and the cache `backend` wants.
    pub async fn on(db: Db, backend: Backend) -> TestEnv {
        let database = match db {
            Db::Sqlite => Database::Sqlite(tempfile::tempdir().expect("temp dir")),
            Db::Postgres => {
                Database::Postgres(TestDatabase::create().await.expect("test database"))
            }
        };
        TestEnv {
            database,
            redis: (backend == Backend::Redis).then(RedisServer::start),
            cluster: (backend == Backend::Cluster).then(RedisCluster::start),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database {
            Database::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("spywatcher.db").display())
            }
            Database::Postgres(db) => db.url().to_string(),
        }
    }

    /// Settings for an instance: fast timeouts so outages take milliseconds.
    pub fn settings(&self) -> Settings {
        // The cluster's nodes as an operator gives them, through the
        // variable's own parsing.
        let nodes = self.cluster.as_ref().map(RedisCluster::nodes_env);
        let mut settings =
            Settings::from_lookup(|var| nodes.clone().filter(|_| var == "REDIS_CLUSTER_NODES"))
                .expect("default settings");
        assert_eq!(
            matches!(settings.cache, CacheBackend::RedisCluster { .. }),
            self.cluster.is_some()
        );
        settings.host = [127, 0, 0, 1].into();
        settings.port = 0;
        settings.database_url = self.database_url();
        if let Some(redis) = &self.redis {
            settings.cache = CacheBackend::Redis { url: redis.url() };
        }
        settings.admin_token = Some(ADMIN.into());
        settings.ingest_token = Some(INGEST.into());
        settings.api_token = Some(API.into());
        settings.cache_op_timeout = Duration::from_millis(100);
        settings.breaker_cooldown = Duration::from_millis(200);
        settings.journal_interval = Duration::from_millis(200);
        settings.rate_limit_per_minute = 100_000;
        settings
    }

    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(self.settings()).await
    }

    pub async fn spawn_with(&self, settings: Settings) -> TestApp {
        let app = Application::build(&settings)
            .await
            .expect("application builds");
        self.run(app)
    }

    /// Serves a built application (a test may arm the cache's pause
    /// points between the build and the run).
    pub fn run(&self, app: Application) -> TestApp {
        let port = app.port();
        let store = app.state().service.store.clone();
        let cache = app.state().service.cache.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            store,
            cache,
            stop: Some(stop),
            server: Some(server),
        }
    }
}

/// A running instance of the service.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The instance's own database handle, for uncached computations.
    pub store: EventStore,
    /// The instance's cache, to watch its state (`is_degraded`).
    pub cache: spywatcher_cache::Cache,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.address));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token)
            .send()
            .await
            .expect("request")
    }

    pub async fn analytics(&self, kind: &str, guild: &GuildId) -> Response {
        self.get(
            &format!("/api/analytics/{kind}?guildId={}", guild.as_str()),
            Some(API),
        )
        .await
    }

    pub async fn post_events(&self, kind: &str, body: serde_json::Value) -> Response {
        self.request(Method::POST, &format!("/api/events/{kind}"), Some(INGEST))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Stops accepting, lets requests in flight finish, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Ends the instance at once, as a crash would (its tasks are aborted).
    pub fn kill(mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Small deterministic data: two guilds whose every analytics has rows.
pub async fn seed(store: &EventStore) -> Vec<GuildId> {
    let config = GeneratorConfig {
        guilds: 2,
        users: 60,
        events: 4_000,
        end: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    generate_into(store, &config, |_, _| {})
        .await
        .expect("seed data")
        .guilds
}

/// Like [`seed`], for tests that compare what is served with a fresh
/// computation over tens of seconds: clients and shifts count events in
/// windows that slide with the clock ([now−14d, now−7d) and [now−7d, now]),
/// so a seeded event crossing a window edge during the test would change a
/// fresh computation with no event ingested. Here no seeded event lies
/// within 10 minutes of either edge: the same members (same generator seed)
/// are active in [now−13d−10m, now−7d−10m] and in [now−6d−10m, now−10m],
/// and (a generator quirk with 6 days of history) quitters' messages sit at
/// the end of each batch minus 7 days, 10 minutes from the edges too.
pub async fn seed_stable(store: &EventStore) -> Vec<GuildId> {
    let margin = chrono::Duration::minutes(10);
    let now = chrono::Utc::now();
    let mut guilds = Vec::new();
    for end in [now - chrono::Duration::days(7) - margin, now - margin] {
        let config = GeneratorConfig {
            guilds: 2,
            users: 60,
            days: 6,
            events: 2_000,
            end,
            ..GeneratorConfig::default()
        };
        guilds = generate_into(store, &config, |_, _| {})
            .await
            .expect("seed data")
            .guilds;
    }
    guilds
}

/// An event of `kind` by `user` in `guild`, created now.
pub fn event(kind: EventKind, guild: &GuildId, user: &str) -> Value {
    let mut event =
        json!({ "guildId": guild.as_str(), "userId": user, "username": "newcomer_name" });
    let fields = match kind {
        EventKind::Message => json!({ "channelId": "77", "channel": "general", "content": "hi" }),
        EventKind::Typing => json!({ "channelId": "77", "channel": "general" }),
        EventKind::Presence => json!({ "clients": ["desktop", "mobile", "web"] }),
        EventKind::RoleChange => json!({ "addedRoles": ["moderator"] }),
        EventKind::MemberJoin => json!({ "accountAgeDays": 3 }),
    };
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

pub async fn json(response: Response) -> serde_json::Value {
    response.json().await.expect("JSON body")
}

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Asserts an error response: status and the JSON body SPEC 4 requires.
pub async fn assert_error(response: Response, status: u16) -> serde_json::Value {
    let got = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let body = json(response).await;
    assert_eq!(got, status, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    body
}

/// The admin stats route's body.
pub async fn cache_stats(app: &TestApp) -> serde_json::Value {
    json(
        app.get("/api/admin/monitoring/cache/stats", Some(ADMIN))
            .await,
    )
    .await
}

/// One counter of the cache statistics.
pub async fn cache_counter(app: &TestApp, name: &str) -> u64 {
    cache_stats(app).await["stats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Caches all six analytics of a guild, through the API.
pub async fn warm(app: &TestApp, guild: &GuildId) {
    for &kind in spywatcher_analytics::AnalyticsKind::ALL {
        app.analytics(kind.as_str(), guild).await;
    }
}

/// A user of `guild` who is a lurker (an event by them changes analytics).
pub async fn a_lurker(app: &TestApp, guild: &GuildId) -> String {
    json(app.analytics("lurkers", guild).await).await[0]["userId"]
        .as_str()
        .expect("seed data has lurkers")
        .to_string()
}

/// Waits until some instance has applied every journal entry (marked it
/// applied: entries stay in the database for the retention window).
pub async fn wait_for_applied_journal(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !app.store.pending_invalidations().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the `/metrics` samples whose line begins with `name` (a
/// metric, or a metric with its labels). The recorder is the process's:
/// other tests running at once add to it, so compare with bounds.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until warming on start is done (`/health/ready`'s `warmOnStart`)
/// and returns what it reports.
pub async fn warmed_on_start(app: &TestApp) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let progress = json(app.get("/health/ready", None).await).await["warmOnStart"].clone();
        if progress["status"] == "done" {
            return progress;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warming on start not done: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
