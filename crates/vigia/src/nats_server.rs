//! Finding NATS for `vigia up`: connect to the configured URL, or start a
//! child `nats-server` with `nats/nats-server.conf` when nothing listens
//! there, and stop it again on exit.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use vigia_bus::Bus;

use crate::config::NatsConfig;

/// A `nats-server` started by us; terminated gracefully on [`NatsChild::stop`], killed on drop.
#[derive(Debug)]
pub struct NatsChild {
    child: Child,
}

impl NatsChild {
    /// Asks the server to shut down (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// Connects to NATS, starting a child server when allowed and needed.
pub async fn connect_or_spawn(config: &NatsConfig, allow_spawn: bool) -> anyhow::Result<(Bus, Option<NatsChild>)> {
    let access = config.access();
    let first = match Bus::connect_as(&config.url, &access).await {
        Ok(bus) => return Ok((bus, None)),
        Err(e) => e,
    };
    if !(allow_spawn && config.spawn) {
        return Err(first).context("NATS is not reachable; start nats-server or set nats.url");
    }
    let Some(binary) = which("nats-server") else {
        bail!(
            "nothing listens at {} and nats-server is not installed. Install it with \
             `apt-get install -y nats-server` (Debian/Ubuntu) or from https://github.com/nats-io/nats-server/releases, \
             or point nats.url / VIGIA_NATS__URL at a running server.",
            config.url
        );
    };
    let (host, port) = host_port(&config.url)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
    let conf = config.dir.join("nats-server.conf");
    tracing::info!(url = %config.url, conf = %conf.display(), "No NATS at the configured URL; starting nats-server.");
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .args(["-a", &host, "-p", &port.to_string()])
        .arg("-sd")
        .arg(&config.data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start nats-server with {}", conf.display()))?;
    for _ in 0..100 {
        if let Some(status) = child.try_wait()? {
            bail!(
                "nats-server exited at start ({status}); see its messages above (is the MQTT port of nats-server.conf, 1884, taken?)"
            );
        }
        if let Ok(bus) = Bus::connect_as(&config.url, &access).await {
            return Ok((bus, Some(NatsChild { child })));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nats-server started but {} did not answer within 10 s", config.url)
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split("://").last().unwrap_or(url);
    let hostport = rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "4222"));
    let port = port.parse().with_context(|| format!("bad port in NATS URL {url}"))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(super::host_port("nats://127.0.0.1:4333").unwrap(), ("127.0.0.1".into(), 4333));
        assert_eq!(super::host_port("nats://u:p@localhost").unwrap(), ("localhost".into(), 4222));
        assert!(super::host_port("nats://h:x").is_err());
    }
}
