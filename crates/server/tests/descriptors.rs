//! The real binary under a small descriptor limit (`ulimit -n 128`), with
//! more stalled connections than descriptors: the connection cap keeps it
//! answering, and accept errors (`EMFILE`, when the cap is set above the
//! limit) do not make it spin. A process of its own, since the limit is
//! per process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

const TOKEN: &str = "descriptor-test-admin-token";

struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `spywatcher serve` under `ulimit -n 128`, header timeout 500 ms
    /// unless `extra` says otherwise.
    async fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let port = spywatcher_testkit::redis::free_port();
        let log = dir.join("server.log");
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -n 128 && exec \"$0\" serve"])
            .arg(env!("CARGO_BIN_EXE_spywatcher"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ADMIN_TOKEN", TOKEN)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("HTTP_HEADER_TIMEOUT_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in extra {
            command.env(name, value);
        }
        let server = Server {
            child: command.spawn().expect("start spywatcher"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(server.url("/health/live")).await.is_err() {
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Opens `n` connections that send nothing.
    async fn stall(&self, n: usize) -> Vec<TcpStream> {
        let mut stalled = Vec::new();
        for _ in 0..n {
            let address = format!("127.0.0.1:{}", self.port);
            stalled.push(TcpStream::connect(address).await.expect("connect"));
        }
        stalled
    }

    fn accept_errors(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.matches("accept error").count()
    }

    /// utime + stime, in clock ticks (100 a second).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

/// A new client, on a new connection, within a generous bound.
async fn answered(server: &Server) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(server.url("/health/live")).send().await;
    response.expect("answered").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_stalled_connections_than_descriptors_new_clients_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    // The default cap: 128 descriptors less 64 in reserve.
    let server = Server::start(dir.path(), &[]).await;
    let _stalled = server.stall(150).await;
    assert_eq!(answered(&server).await, 200);
    assert_eq!(
        server.accept_errors(),
        0,
        "the cap kept accept within limits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_do_not_make_the_server_spin() {
    let dir = tempfile::tempdir().unwrap();
    // A cap above the descriptor limit: accept meets EMFILE, for as long
    // as the stalled connections are held (the header timeout).
    let settings = [
        ("HTTP_MAX_CONNECTIONS", "1000"),
        ("HTTP_HEADER_TIMEOUT_MS", "20000"),
    ];
    let server = Server::start(dir.path(), &settings).await;
    let stalled = server.stall(150).await;
    let before = server.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = server.cpu_ticks() - before;
    assert!(server.accept_errors() > 0, "the limit was reached");
    // A loop retrying accept at once would burn a core: 200 ticks in 2 s.
    assert!(spent < 100, "{spent} ticks of CPU in 2 s");
    drop(stalled);
    assert_eq!(answered(&server).await, 200);
}
