//! The InfluxDB side of `vigia peer`: an `influxd` (Debian's `influxdb`
//! package, 1.6) of our own on loopback ports with a temporary directory,
//! written to over the HTTP line protocol and asked in InfluxQL.
//!
//! It never touches an InfluxDB it did not start: the config binds only
//! 127.0.0.1, turns off usage reporting, the `_internal` monitor and every
//! other listener, and keeps all files under the run's temporary directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The database the peer writes to.
const DB: &str = "peer";

/// Mean per sensor over `[from, to]` (unix ms), the same window Vigia answered for.
pub(super) fn means_query(from: i64, to: i64) -> String {
    format!("SELECT mean(value) FROM reading WHERE time >= {from}ms AND time <= {to}ms GROUP BY sensor")
}

/// Count per region, all time (Vigia's counters are all-time too).
pub(super) const COUNTS_QUERY: &str = "SELECT count(value) FROM reading GROUP BY region";

/// A configuration for `influxd run -config`: loopback only, nothing reported, files under `dir`.
pub(super) fn config(dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0

[logging]
  level = "warn"
  suppress-logo = true
"#
    )
}

/// A running `influxd`, killed on drop.
#[derive(Debug)]
pub(super) struct Influx {
    child: Child,
    base: String,
    client: reqwest::Client,
    pub(super) version: String,
}

impl Influx {
    /// Starts `binary` with a generated config under `dir` and creates the database.
    pub(super) async fn start(binary: &str, dir: &Path) -> anyhow::Result<Influx> {
        std::fs::create_dir_all(dir)?;
        let (http_port, rpc_port) = (free_port()?, free_port()?);
        let conf = dir.join("influxdb.conf");
        std::fs::write(&conf, config(dir, http_port, rpc_port))?;
        let child = Command::new(binary)
            .arg("run")
            .arg("-config")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("failed to start `{binary}`; install InfluxDB 1.6 with `apt-get install -y influxdb`")
            })?;
        let base = format!("http://127.0.0.1:{http_port}");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
        let mut influx = Influx { child, base, client, version: String::new() };
        for _ in 0..200 {
            if let Some(status) = influx.child.try_wait()? {
                bail!("influxd exited at start ({status}); see its messages above");
            }
            if let Ok(r) = influx.client.get(format!("{}/ping", influx.base)).send().await
                && r.status().as_u16() == 204
            {
                influx.version = header(&r, "x-influxdb-version");
                influx.query(&format!("CREATE DATABASE {DB}")).await?;
                return Ok(influx);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("influxd did not answer at {} within 20 s", influx.base)
    }

    /// Writes one line-protocol batch (millisecond precision).
    pub(super) async fn write(&self, body: Bytes) -> anyhow::Result<()> {
        let r = self
            .client
            .post(format!("{}/write?db={DB}&precision=ms", self.base))
            .body(body)
            .send()
            .await
            .context("InfluxDB write")?;
        if r.status().as_u16() != 204 {
            let status = r.status();
            bail!("InfluxDB write answered {status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// Runs one InfluxQL statement and returns its parsed answer.
    pub(super) async fn query(&self, q: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}/query", self.base))
            .form(&[("db", DB), ("epoch", "ms"), ("q", q)])
            .send()
            .await
            .with_context(|| format!("InfluxDB query {q}"))?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(status.is_success(), "InfluxDB answered {status} to {q}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).context("InfluxDB's answer is not JSON")?;
        if let Some(e) = v.pointer("/results/0/error").and_then(Value::as_str) {
            bail!("InfluxDB refused {q}: {e}");
        }
        Ok(v)
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One number per group from a `GROUP BY <tag_key>` answer: group → value of
/// the first row's second column (`mean`, `count`).
pub(super) fn grouped(answer: &Value, tag_key: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let Some(series) = answer.pointer("/results/0/series").and_then(Value::as_array) else {
        return Ok(out); // no points matched
    };
    for s in series {
        let group = s
            .pointer(&format!("/tags/{tag_key}"))
            .and_then(Value::as_str)
            .with_context(|| format!("a series without tag `{tag_key}`: {s}"))?;
        let value = s
            .pointer("/values/0/1")
            .and_then(Value::as_f64)
            .with_context(|| format!("a series without a value: {s}"))?;
        out.insert(group.to_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_binds_loopback_and_keeps_files_in_the_dir() {
        let c = config(Path::new("/tmp/x"), 1234, 5678);
        assert!(c.contains(r#"bind-address = "127.0.0.1:1234""#));
        assert!(c.contains(r#"bind-address = "127.0.0.1:5678""#));
        assert!(c.contains("reporting-disabled = true"));
        assert!(!c.contains(r#"":"#), "no listener on every interface");
        for key in ["dir = \"/tmp/x/meta\"", "dir = \"/tmp/x/data\"", "wal-dir = \"/tmp/x/wal\""] {
            assert!(c.contains(key), "{key}");
        }
    }

    #[test]
    fn queries_use_the_window_in_milliseconds() {
        assert_eq!(
            means_query(1000, 2000),
            "SELECT mean(value) FROM reading WHERE time >= 1000ms AND time <= 2000ms GROUP BY sensor"
        );
    }

    #[test]
    fn reads_grouped_answers() {
        let answer = serde_json::json!({"results": [{"statement_id": 0, "series": [
            {"name": "reading", "tags": {"region": "norte"}, "columns": ["time", "count"], "values": [[0, 200]]},
            {"name": "reading", "tags": {"region": "sul"}, "columns": ["time", "count"], "values": [[0, 7]]}
        ]}]});
        let got = grouped(&answer, "region").unwrap();
        assert_eq!(got, BTreeMap::from([("norte".into(), 200.0), ("sul".into(), 7.0)]));
        assert!(grouped(&answer, "sensor").is_err(), "a missing tag is an error, not a silent zero");
        let empty = serde_json::json!({"results": [{"statement_id": 0}]});
        assert!(grouped(&empty, "region").unwrap().is_empty());
    }
}
