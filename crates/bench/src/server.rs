//! The servers under test: `spywatcher serve` child processes with a
//! scenario's environment (and nothing else of ours: the environment is
//! cleared, and the working directory is empty, so neither a stray
//! variable nor a `.env` file changes what is measured), and the private
//! `redis-server` the Redis scenarios share.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spywatcher_analytics::AnalyticsKind;
use spywatcher_testkit::redis::{RedisServer, free_port};
use tokio::process::{Child, Command};

use crate::cli::Cache;
use crate::plan::{Mode, Scenario};

/// The one token of the run: admin may read, post events and see the stats.
pub const TOKEN: &str = "bench-admin-token-0123456789abcdef";

/// How long a server may take to answer `/health/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment of one server of a scenario.
pub fn server_env(
    scenario: &Scenario,
    database_url: &str,
    redis_url: Option<&str>,
    grace_seconds: u64,
    port: u16,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("DATABASE_URL", database_url.to_owned()),
        ("ADMIN_TOKEN", TOKEN.to_owned()),
        ("RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    match scenario.cache {
        Cache::Off => env.push(("CACHE_ENABLED".into(), "false".into())),
        Cache::Embedded => {}
        Cache::Redis => {
            if let Some(url) = redis_url {
                env.push(("REDIS_URL".into(), url.to_owned()));
            }
        }
    }
    if scenario.cache != Cache::Off && scenario.mode == Mode::Grace {
        for kind in AnalyticsKind::ALL {
            env.push((
                format!("CACHE_GRACE_{}", kind.as_str().to_uppercase()),
                grace_seconds.to_string(),
            ));
        }
    }
    env
}

/// A running `spywatcher serve`; killed if dropped without [`stop`](Self::stop).
pub struct ServerProcess {
    child: Child,
    pub base_url: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve` in `workdir` with exactly `env` (and `PATH`),
    /// and waits until `/health/ready` answers 200.
    pub async fn start(
        binary: &Path,
        env: &[(String, String)],
        workdir: &Path,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let port = env
            .iter()
            .find(|(k, _)| k == "PORT")
            .map(|(_, v)| v.clone())
            .context("the server environment has no PORT")?;
        std::fs::create_dir_all(workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        let log = workdir.join(format!("server-{port}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .current_dir(workdir)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH".to_owned(), p)))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("server log")?)
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| {
            format!(
                "--server {}: cannot start it (build it with `cargo build --release -p spywatcher`)",
                binary.display()
            )
        })?;
        let mut server = ServerProcess {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready(http).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/health/ready", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            let answer = http.get(&url).timeout(Duration::from_secs(2)).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not become ready within {} s:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// The last lines the server wrote, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A port for a server; taken from the same pool as the test kit's.
pub fn server_port() -> u16 {
    free_port()
}

/// The private Redis of the run, emptied between scenarios.
pub struct Redis {
    server: RedisServer,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port, no persistence.
    pub fn start() -> anyhow::Result<Self> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            bail!(
                "redis-server is not installed (scripts/bench-workload installs it), \
                 or leave redis out of --caches"
            );
        }
        Ok(Redis {
            server: RedisServer::start(),
        })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Empties it, so a scenario starts as cold as the embedded cache does.
    pub fn flush(&self) -> anyhow::Result<()> {
        match self.server.cli(&["FLUSHALL"]).as_str() {
            "OK" => Ok(()),
            other => bail!("redis FLUSHALL answered {other:?}"),
        }
    }

    /// `INFO memory`'s `used_memory_human`, e.g. `2.31M`.
    pub fn used_memory_human(&self) -> Option<String> {
        crate::scrape::info_field(&self.server.cli(&["INFO", "memory"]), "used_memory_human")
    }
}

#[cfg(test)]
mod tests {
    use super::server_env;
    use crate::cli::{Cache, Database};
    use crate::plan::{Mode, Scenario};

    fn env(cache: Cache, mode: Mode) -> Vec<(String, String)> {
        let scenario = Scenario {
            database: Database::Sqlite,
            cache,
            mode,
            rate: 5.0,
        };
        server_env(
            &scenario,
            "sqlite:///tmp/x.db",
            Some("redis://127.0.0.1:1/"),
            30,
            4000,
        )
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn off_turns_caching_off_and_redis_gets_its_url() {
        let off = env(Cache::Off, Mode::Strict);
        assert_eq!(get(&off, "CACHE_ENABLED"), Some("false"));
        assert_eq!(get(&off, "REDIS_URL"), None);
        assert_eq!(get(&off, "RATE_LIMIT_PER_MINUTE"), Some("0"));
        let redis = env(Cache::Redis, Mode::Strict);
        assert_eq!(get(&redis, "CACHE_ENABLED"), None);
        assert_eq!(get(&redis, "REDIS_URL"), Some("redis://127.0.0.1:1/"));
        assert_eq!(get(&env(Cache::Embedded, Mode::Strict), "REDIS_URL"), None);
    }

    #[test]
    fn grace_applies_to_all_six_analytics_and_strict_to_none() {
        let grace = env(Cache::Embedded, Mode::Grace);
        for kind in ["GHOSTS", "LURKERS", "HEATMAP", "ROLES", "CLIENTS", "SHIFTS"] {
            assert_eq!(get(&grace, &format!("CACHE_GRACE_{kind}")), Some("30"));
        }
        let strict = env(Cache::Redis, Mode::Strict);
        assert!(!strict.iter().any(|(k, _)| k.starts_with("CACHE_GRACE_")));
    }
}
