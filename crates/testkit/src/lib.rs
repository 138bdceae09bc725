//! Test helpers that start real services with isolated state.
//!
//! `NatsServer::start()` runs a real `nats-server` with JetStream on a random
//! loopback port and a temporary store directory, and kills it on drop
//! (after the style of nats.rs's own test crate). There are no mocks here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` child process, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    url: String,
    mqtt_port: Option<u16>,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` with JetStream on a random port.
    ///
    /// # Panics
    /// When `nats-server` is not installed or does not come up: tests must
    /// fail loudly, never skip.
    pub fn start() -> NatsServer {
        Self::start_with(false)
    }

    /// Like [`NatsServer::start`], with the MQTT listener on a random port too.
    pub fn start_with_mqtt() -> NatsServer {
        Self::start_with(true)
    }

    fn start_with(mqtt: bool) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let store = dir.path().join("js");
        let mut conf = format!(
            "server_name: vigia_test\nlisten: 127.0.0.1:-1\njetstream {{ store_dir: {:?} }}\n",
            store.display().to_string()
        );
        let mqtt_port = mqtt.then(free_port);
        if let Some(port) = mqtt_port {
            conf.push_str(&format!("mqtt {{ listen: 127.0.0.1:{port} }}\n"));
        }
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf).expect("write nats.conf");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf_path)
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}). Install it: `apt-get install -y nats-server` \
                     (Debian/Ubuntu) or put a nats-server 2.9+ binary on PATH."
                )
            });
        let url = wait_for_ports_file(dir.path(), child.id());
        NatsServer { child, url, mqtt_port, _dir: dir }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The MQTT listener's port, when started with one.
    pub fn mqtt_port(&self) -> Option<u16> {
        self.mqtt_port
    }

    /// The directory holding this server's state.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_ports_file(dir: &Path, pid: u32) -> String {
    let path: PathBuf = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = json["nats"][0].as_str()
        {
            return url.to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nats-server did not report its ports within 15 s (looked for {})", path.display());
}

/// A port free at the time of asking, for listeners that cannot pick their own.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind a free port")
}

/// The workspace root, for tests that read `nats/` or `openapi/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}
