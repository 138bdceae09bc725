//! What operators read: `/metrics` is valid Prometheus text exposing exactly
//! the metrics docs/metrics.md lists, and `VIGIA_LOG__FORMAT=json` makes
//! every log line one JSON object.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value as Json;
use vigia_bus::READINGS;
use vigia_testkit::{NatsServer, free_port, workspace_root};

use crate::child::Vigia;
use crate::common::{TestEnv, shared_turn, wait_for};

/// One metric family of a scrape: its type, label names, and sample count.
#[derive(Debug, Default, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    samples: usize,
}

fn is_name(s: &str, first_extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || first_extra.contains(&c))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || first_extra.contains(&c))
}

/// Parses the Prometheus text format 0.0.4 strictly enough to catch what a
/// scraper refuses: samples before their TYPE, a family split in two groups,
/// a second TYPE, bad names, bad label syntax, values that are not numbers.
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            if keyword == "TYPE" {
                let kind = parts.next().unwrap_or_default();
                assert!(is_name(name, &[':']), "bad metric name in `{line}`");
                assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind), "`{line}`");
                assert!(!families.contains_key(name), "a second TYPE line for {name}");
                families.insert(name.to_owned(), Family { kind: kind.to_owned(), ..Family::default() });
                current = Some(name.to_owned());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in `{line}`"));
        assert!(value.parse::<f64>().is_ok(), "`{value}` is not a number in `{line}`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: `{line}`"))),
            None => (series, ""),
        };
        let family = current.clone().unwrap_or_else(|| panic!("sample before any TYPE: `{line}`"));
        let kind = &families[&family].kind;
        let belongs = name == family
            || (kind == "summary" && [format!("{family}_sum"), format!("{family}_count")].contains(&name.to_owned()));
        assert!(belongs, "`{line}` is not in the group of {family}: every family must be one contiguous group");
        let entry = families.get_mut(&family).expect("family");
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("bad label `{pair}` in `{line}`"));
            assert!(is_name(key, &[]), "bad label name `{key}`");
            assert!(
                quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                "unquoted label in `{line}`"
            );
            entry.labels.insert(key.to_owned());
        }
        entry.samples += 1;
    }
    families
}

/// The `| \`name\` | type | labels | meaning |` rows of docs/metrics.md.
fn documented_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter(|l| l.starts_with("| `vigia_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let labels = cells[3].split(',').map(|s| s.trim().trim_matches('`').to_owned()).filter(|s| !s.is_empty());
            (cells[1].trim_matches('`').to_owned(), (cells[2].to_owned(), labels.collect()))
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_match_the_documented_list() {
    let env = TestEnv::start().await;
    let (running, base) = env.serve().await;
    env.publish_raw("brasil.sul.s1", br#"{"value": 12}"#).await;
    env.publish_raw("brasil.sul.s2", b"not json").await;
    env.drained(READINGS, "persister").await;

    let text = reqwest::get(format!("{base}/metrics")).await.expect("GET /metrics").text().await.expect("body");
    let scraped = parse_exposition(&text);
    let documented = documented_metrics();
    assert!(documented.len() >= 10, "docs/metrics.md lists the metrics in its table: {documented:?}");
    let scraped_names: BTreeSet<&String> = scraped.keys().collect();
    let documented_names: BTreeSet<&String> = documented.keys().collect();
    assert_eq!(scraped_names, documented_names, "/metrics and docs/metrics.md name the same metrics:\n{text}");
    for (name, (kind, labels)) in &documented {
        let family = &scraped[name];
        assert_eq!(&family.kind, kind, "{name}: type");
        assert_eq!(&family.labels, labels, "{name}: labels");
        assert!(family.samples > 0, "{name} has samples");
    }
    assert!(text.contains("vigia_events_error{root=\"brasil\"} 1\n"), "{text}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_json_object_per_line() {
    let _turn = shared_turn().await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("vigia.toml"),
        format!(
            "[nats]\nurl = {:?}\nspawn = false\ndir = {:?}\n\n[store]\nurl = \"mem://\"\n\n[http]\nlisten = {listen:?}\n",
            nats.url(),
            workspace_root().join("nats").display().to_string()
        ),
    )
    .expect("write vigia.toml");
    let serve = Vigia::spawn(dir.path(), "serve", &["serve"], &[("VIGIA_LOG__FORMAT", "json")]);
    let health = format!("http://{listen}/health");
    wait_for("vigia serve to answer /health", Duration::from_secs(60), || {
        let url = health.clone();
        async move { reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    assert!(tokio::task::block_in_place(|| serve.sigterm()).success(), "serve stops cleanly");

    let log = std::fs::read_to_string(dir.path().join("serve.log")).expect("serve.log");
    let lines: Vec<Json> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "serve logged its start and stop:\n{log}");
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line[key].is_string(), "`{key}` in {line}");
        }
        assert!(line["fields"]["message"].is_string(), "fields.message in {line}");
    }
    let warned = lines
        .iter()
        .any(|l| l["level"] == "WARN" && l["fields"]["message"].as_str().is_some_and(|m| m.contains("tokens")));
    assert!(warned, "the open-API warning is a structured WARN line:\n{log}");
    let out = std::fs::read_to_string(dir.path().join("serve.out")).expect("serve.out");
    assert!(out.is_empty(), "logs go to standard error, not standard output: {out}");
}
