//! Fresh PostgreSQL databases for tests.
//!
//! Each [`TestDatabase`] is a new, uniquely named database on the server
//! named by `SPYWATCHER_TEST_PG_URL` (an admin URL whose user may create
//! databases; `scripts/test` sets it). It is dropped when the value is
//! dropped. Databases left behind by test processes that died (their names
//! carry the creating process id) are dropped by the next test run.
//! [`TestDatabase::create_for_process`] does the same for a program that
//! names its database (the workload benchmark's `spywatcher_bench_<pid>`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

/// The environment variable holding the admin URL.
pub const PG_URL_ENV: &str = "SPYWATCHER_TEST_PG_URL";
/// Used when the variable is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Every test database's name starts with this.
pub const PREFIX: &str = "spywatcher_test_";

/// The admin URL tests use.
pub fn admin_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database that exists for the life of this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates an empty database.
    pub async fn create() -> anyhow::Result<Self> {
        static SWEPT: OnceCell<()> = OnceCell::const_new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);

        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
            format!("connecting to PostgreSQL at {admin_url} (set {PG_URL_ENV})")
        })?;
        SWEPT.get_or_try_init(|| drop_stale(&mut admin)).await?;

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{PREFIX}{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // The name is made of our own digits and underscores: safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let url = with_database(&admin_url, &name);
        Ok(Self {
            name,
            url,
            admin_url,
            dropped: false,
        })
    }

    /// Creates `{prefix}{pid}` on the server of `admin_url`, for a program
    /// (the workload benchmark) that wants one database per run under a
    /// name of its own, on a server of its choosing. Databases of that
    /// prefix whose process is gone are dropped first, as are leftovers of
    /// this name (a process id reused).
    pub async fn create_for_process(admin_url: &str, prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database prefix {prefix:?}: lower-case letters, digits and underscores only"
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        drop_stale_with_prefix(&mut admin, prefix).await?;
        let name = format!("{prefix}{}", std::process::id());
        // Our own prefix (checked above) and digits: safe to splice.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .with_context(|| format!("creating database {name}"))?;
        }
        Ok(Self {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
            dropped: false,
        })
    }

    /// URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, reporting errors (dropping the value does it
    /// too, silently).
    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime, where blocking on a future is not
        // allowed: do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(drop_database(&admin_url, &name)).ok()
        })
        .join();
    }
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    // FORCE: pools of the test may still hold connections.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    Ok(())
}

/// Drops test databases whose creating process is gone.
async fn drop_stale(admin: &mut PgConnection) -> anyhow::Result<()> {
    drop_stale_with_prefix(admin, PREFIX).await
}

/// Drops databases named `{prefix}{pid}...` whose process `pid` is gone.
async fn drop_stale_with_prefix(admin: &mut PgConnection, prefix: &str) -> anyhow::Result<()> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut *admin)
            .await?;
    for name in names {
        let pid = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('_').next())
            .unwrap_or_default();
        let alive = !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists();
        let ours_by_shape = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !alive && ours_by_shape {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await?;
        }
    }
    Ok(())
}

/// `url` with its database (path) replaced by `name`, query string kept.
pub fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let (head, query) = match url[authority_start..].find('?') {
        Some(q) => url.split_at(authority_start + q),
        None => (url, ""),
    };
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    format!("{base}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
