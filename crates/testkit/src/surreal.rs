//! A real SurrealDB server for the remote-store tests: `surreal start` on a
//! free loopback port, in memory, with root credentials of its own, killed
//! on drop. The `surreal` binary is SurrealDB 3.3 built from crates.io
//! (`tools/surreal`, see docs/operations.md); nothing here fakes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{free_port, workspace_root};

/// The release line of the `surrealdb` client in the workspace's Cargo.lock;
/// a server of another line may not speak its protocol.
pub const SURREAL_LINE: &str = "3.3.";

const INSTALL: &str = "Build it from crates.io (SurrealDB 3.3.5, over an hour on 2 cores): \
     `cargo install --locked --path tools/surreal --root ~/.cargo` (or `just surreal`), \
     or point SURREAL_BIN at a `surreal` 3.3 binary.";

/// A `surreal start` child process, killed when dropped.
#[derive(Debug)]
pub struct SurrealServer {
    child: Child,
    binary: PathBuf,
    /// `memory`, or a SurrealKV directory that outlives a restart.
    engine: String,
    port: u16,
    password: String,
    version: String,
    _dir: tempfile::TempDir,
}

impl SurrealServer {
    /// The root user the server is started with.
    pub const USER: &'static str = "root";

    /// Starts an in-memory SurrealDB server and waits until it is ready
    /// (`surreal isready`, the check docker-compose.yml uses too).
    ///
    /// # Panics
    /// When the `surreal` binary is missing, is not of the client's release
    /// line, or the server does not come up within 60 s: tests fail with the
    /// way to fix it, never skip.
    pub fn start() -> SurrealServer {
        Self::start_on("memory")
    }

    /// Like [`SurrealServer::start`], keeping the data in a SurrealKV
    /// directory of its own, so that [`SurrealServer::restart`] finds it again.
    pub fn start_persistent() -> SurrealServer {
        Self::start_on("surrealkv://db")
    }

    fn start_on(engine: &str) -> SurrealServer {
        let binary = surreal_binary();
        let version = version_of(&binary);
        assert!(
            version.starts_with(SURREAL_LINE),
            "{} is SurrealDB {version}; the tests need the {SURREAL_LINE}x server the `surrealdb` client speaks to. {INSTALL}",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("temp dir for surreal");
        let port = free_port();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let password = format!("pw-{}-{nanos}", std::process::id());
        let child = spawn(&binary, dir.path(), engine, port, &password);
        let mut server = SurrealServer { child, binary, engine: engine.to_owned(), port, password, version, _dir: dir };
        server.wait_ready();
        server
    }

    /// Kills the server (SIGKILL, as in a crash), leaves it down for `down`,
    /// and starts it again on the same port and engine.
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(&self.binary, self._dir.path(), &self.engine, self.port, &self.password);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let binary = self.binary.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let log = std::fs::read_to_string(self._dir.path().join("surreal.log")).unwrap_or_default();
                panic!("surreal exited at start ({status}):\n{log}");
            }
            let ready = Command::new(&binary)
                .args(["isready", "--endpoint", &endpoint])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("surreal did not become ready at {endpoint} within 60 s");
    }

    /// `ws://127.0.0.1:<port>`, the store URL Vigia takes.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The root password (random per server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// What `surreal version` printed, e.g. `3.3.5 for linux on x86_64`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl Drop for SurrealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, dir: &Path, engine: &str, port: u16, password: &str) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("surreal.log")).expect("surreal log");
    Command::new(binary)
        .args(["start", "--no-banner", "--log", "warn", "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--user", SurrealServer::USER, "--pass", password, engine])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}). {INSTALL}", binary.display()))
}

/// `$SURREAL_BIN`, else `surreal` on `PATH`, else `~/.cargo/bin/surreal`.
///
/// # Panics
/// When none exists, with the way to install it.
pub fn surreal_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SURREAL_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "SURREAL_BIN={} does not exist. {INSTALL}", bin.display());
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("surreal")).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/surreal"));
    on_path.into_iter().chain(cargo_bin).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the remote-store tests need a SurrealDB server binary `surreal` and found none \
             (looked at $SURREAL_BIN, PATH and ~/.cargo/bin; workspace {}). {INSTALL}",
            workspace_root().display()
        )
    })
}

fn version_of(binary: &Path) -> String {
    let out = Command::new(binary)
        .arg("version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{} version` ({e}). {INSTALL}", binary.display()));
    assert!(out.status.success(), "`{} version` failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
