//! Test helpers that start real services with isolated state.
//!
//! `NatsServer::start()` runs a real `nats-server` with JetStream on a random
//! loopback port and a temporary store directory, and kills it on drop
//! (after the style of nats.rs's own test crate). `Browser::start()` runs a
//! headless Chromium over WebDriver for the dashboard's tests;
//! `SurrealServer::start()` a SurrealDB server for the remote-store tests.
//! There are no mocks here.

mod browser;
mod cluster;
mod surreal;

pub use browser::Browser;
pub use cluster::NatsCluster;
pub use surreal::{SURREAL_LINE, SurrealServer, surreal_binary};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` child process, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    url: String,
    mqtt_port: Option<u16>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` with JetStream on a random port.
    ///
    /// # Panics
    /// When `nats-server` is not installed or does not come up: tests must
    /// fail loudly, never skip.
    pub fn start() -> NatsServer {
        Self::start_with(false, "", &[])
    }

    /// Like [`NatsServer::start`], with the MQTT listener on a random port too.
    pub fn start_with_mqtt() -> NatsServer {
        Self::start_with(true, "", &[])
    }

    /// Like [`NatsServer::start`], with `extra` appended to the configuration
    /// (e.g. the text of `nats/accounts.conf`) and `env` set for the server,
    /// which resolves `$VARIABLES` in its configuration from it.
    pub fn start_with_conf(extra: &str, env: &[(&str, &str)]) -> NatsServer {
        Self::start_with(false, extra, env)
    }

    fn start_with(mqtt: bool, extra: &str, env: &[(&str, &str)]) -> NatsServer {
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
        conf.push_str(extra);
        conf.push('\n');
        Self::launch(dir, &conf, mqtt_port, env)
    }

    /// Starts `nats-server` from the repository's own `nats/nats-server.conf`
    /// (JetStream, MQTT, its limits), with the client, monitoring and MQTT
    /// ports swapped for free ones and the store in a temporary directory,
    /// so the test exercises the file users run.
    ///
    /// # Panics
    /// When `nats-server` is missing, or the shipped file no longer has the
    /// lines swapped here (then update this function with the file).
    pub fn start_shipped() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let shipped = workspace_root().join("nats/nats-server.conf");
        let mut conf = std::fs::read_to_string(&shipped).expect("read nats/nats-server.conf");
        let mqtt_port = free_port();
        let store = dir.path().join("js").display().to_string();
        for (from, to) in [
            ("listen: 127.0.0.1:4222".to_owned(), "listen: 127.0.0.1:-1".to_owned()),
            ("http: 127.0.0.1:8222".to_owned(), String::new()),
            ("listen: 127.0.0.1:1884".to_owned(), format!("listen: 127.0.0.1:{mqtt_port}")),
            ("store_dir: \"./data/nats\"".to_owned(), format!("store_dir: {store:?}")),
        ] {
            assert!(conf.contains(&from), "nats/nats-server.conf no longer has `{from}`");
            conf = conf.replace(&from, &to);
        }
        Self::launch(dir, &conf, Some(mqtt_port), &[])
    }

    fn launch(dir: tempfile::TempDir, conf: &str, mqtt_port: Option<u16>, env: &[(&str, &str)]) -> NatsServer {
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, conf).expect("write nats.conf");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let child = spawn(&conf_path, dir.path(), &env);
        let url = wait_for_ports_file(dir.path(), child.id());
        NatsServer { child, url, mqtt_port, env, _dir: dir }
    }

    /// Kills the server (SIGKILL, no goodbye) and starts it again on the same
    /// port with the same JetStream store, as after a crash.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.url.rsplit(':').next().expect("url has a port").to_owned();
        let conf_path = self.dir().join("nats.conf");
        let conf = std::fs::read_to_string(&conf_path).expect("read nats.conf");
        std::fs::write(&conf_path, conf.replace("listen: 127.0.0.1:-1", &format!("listen: 127.0.0.1:{port}")))
            .expect("write nats.conf");
        self.child = spawn(&conf_path, self.dir(), &self.env);
        let url = wait_for_ports_file(self.dir(), self.child.id());
        assert_eq!(url, self.url, "nats-server came back on the same port");
    }

    /// Kills the server (SIGKILL) and leaves it down.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn spawn(conf_path: &Path, dir: &Path, env: &[(String, String)]) -> Child {
    Command::new("nats-server")
        .arg("-c")
        .arg(conf_path)
        .arg("--ports_file_dir")
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start nats-server ({e}). Install it: `apt-get install -y nats-server` \
                 (Debian/Ubuntu) or put a nats-server 2.9+ binary on PATH."
            )
        })
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
