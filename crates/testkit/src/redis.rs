//! Private `redis-server` processes for tests.
//!
//! Each [`RedisServer`] runs in its own temporary directory on a free loopback
//! port, so tests never share state with each other or with a Redis the
//! machine already runs. A server can be killed and restarted on the same
//! port with its data (RDB), which is how outages are tested.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A `redis-server` owned by a test; killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with default settings (no persistence unless saved by hand).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, e.g.
    /// `["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]`.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("spywatcher-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        // The port was free a moment ago; another test (or a cluster node's
        // bus port) may have taken it since. Retry on a fresh port a few times.
        let mut attempt = 1;
        loop {
            match server.try_spawn() {
                Ok(()) => return server,
                Err(e) if attempt < 3 && e.exited => {
                    attempt += 1;
                    server.port = free_port();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a command through `redis-cli` and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes the dataset to disk (`SAVE`), so a restart brings it back.
    pub fn save(&self) {
        assert_eq!(self.cli(&["SAVE"]), "OK", "redis SAVE failed");
    }

    /// Kills the server at once (SIGKILL): an outage, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it accepts connections but never answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a server frozen by [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the server again on the same port and directory, loading the
    /// RDB file left by the last [`save`](Self::save).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("server is running");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.message);
        }
    }

    fn try_spawn(&mut self) -> Result<(), SpawnError> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--dbfilename", "dump.rdb", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("start redis-server (is it installed? ./scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last_error;
        let exited = loop {
            match ping(self.port) {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => last_error = e,
            }
            // A server that could not bind its port (or its cluster bus port)
            // exits at once: report that now rather than after the deadline.
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("redis-server exited ({status}); last ping: {last_error}");
                break true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        Err(SpawnError {
            exited,
            message: format!(
                "redis-server on port {} did not start: {last_error}\n{log}",
                self.port
            ),
        })
    }
}

struct SpawnError {
    /// The process exited by itself (e.g. its port was taken), as opposed to
    /// never answering within the deadline.
    exited: bool,
    message: String,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server ignores SIGKILL until continued on some kernels' views
            // of the process; continue it first so the kill is prompt.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// A loopback port that was free a moment ago. Ports below 55535 are chosen so
/// that a Redis Cluster node's bus port (port + 10000) is a valid port too.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
        if port >= 55535 {
            // Ask for a port in the lower range directly.
            for candidate in (20000..55535).step_by(97) {
                let candidate = candidate + (std::process::id() as u16 % 97);
                if TcpListener::bind(("127.0.0.1", candidate)).is_ok()
                    && TcpListener::bind(("127.0.0.1", candidate + 10000)).is_ok()
                {
                    return candidate;
                }
            }
        }
    }
}

fn ping(port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    if reply.starts_with("+PONG") {
        Ok(())
    } else {
        // "-LOADING" while the RDB file is read: not ready yet.
        Err(reply.trim().to_string())
    }
}
