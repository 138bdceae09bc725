//! The operations files say what the binary does: every `command:` of
//! `docker-compose.yml` parses as a `vigia` command line, the MQTT port is
//! the same everywhere, and the justfile has the documented recipes, each with a
//! description for `just --list`. (The compose file's schema is checked in
//! `.ci/run` against the vendored Compose Specification schema, and its
//! environment as a configuration in `crates/vigia/src/config.rs`.)

use std::collections::BTreeMap;
use std::process::Command;

use vigia_testkit::workspace_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Per service: whether it runs the vigia image (`<<: *vigia`) and its
/// `command:` as a list. Commands are one-line JSON lists by convention
/// (the file says so), which keeps this reader small.
fn compose_services(text: &str) -> BTreeMap<String, (bool, Option<Vec<String>>)> {
    let mut services = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_services = line.trim_end() == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            current = Some(name.to_owned());
            services.insert(name.to_owned(), (false, None));
            continue;
        }
        let Some(entry) = current.as_ref().and_then(|c| services.get_mut(c)) else { continue };
        match line.trim() {
            "<<: *vigia" => entry.0 = true,
            l if line.starts_with("    command:") => {
                let list = l.trim_start_matches("command:").trim();
                let args: Vec<String> = serde_json::from_str(list)
                    .unwrap_or_else(|e| panic!("`{l}`: write compose commands as one-line JSON lists ({e})"));
                entry.1 = Some(args);
            }
            _ => {}
        }
    }
    services
}

#[test]
fn every_compose_command_is_a_vigia_command_line() {
    let services = compose_services(&read("docker-compose.yml"));
    let vigia: Vec<_> = services.iter().filter(|(_, (image, _))| *image).collect();
    let names: Vec<&str> = vigia.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alert", "load", "persist", "serve", "sim"], "one container per Vigia part");
    for (name, (_, command)) in vigia {
        let args = command.as_ref().unwrap_or_else(|| panic!("service {name} has no command"));
        // Arguments are parsed before the configuration is read: a missing
        // configuration file (exit 1) means clap accepted the command line,
        // which it would have refused with exit 2.
        let out = Command::new(env!("CARGO_BIN_EXE_vigia"))
            .args(["--config", "/nonexistent/vigia.toml"])
            .args(args)
            .output()
            .expect("run vigia");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "service {name}: `vigia {}` was refused: {stderr}", args.join(" "));
        assert!(stderr.contains("does not exist"), "service {name}: {stderr}");
    }
}

#[test]
fn the_mqtt_port_is_1884_in_every_file() {
    let files = ["nats/nats-server.conf", "nats/nats-server.docker.conf", "docker-compose.yml", "docs/nats.md"];
    for path in files {
        let text = read(path);
        assert!(text.contains("1884"), "{path} names the MQTT port 1884");
        assert!(!text.contains("1883:1883") && !text.contains("listen: 127.0.0.1:1883"), "{path} still uses 1883");
    }
    assert!(read("docker-compose.yml").contains("\"1884:1884\""));
}

#[test]
fn the_justfile_has_every_documented_recipe_with_a_description() {
    let text = read("justfile");
    let lines: Vec<&str> = text.lines().collect();
    let mut described = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let head = line.split(':').next().unwrap_or_default();
        let name = head.split_whitespace().next().unwrap_or_default();
        let is_recipe = !line.starts_with([' ', '\t', '#'])
            && line.contains(':')
            && !line.contains(":=")
            && !name.is_empty()
            && name != "set"
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if is_recipe {
            let doc = i.checked_sub(1).map(|j| lines[j]).filter(|l| l.starts_with("# ")).map(|l| &l[2..]);
            described.insert(name.to_owned(), doc.map(str::to_owned));
        }
    }
    for recipe in [
        "up",
        "sim",
        "test",
        "bench",
        "load",
        "openapi",
        "fmt",
        "lint",
        "replay",
        "cluster",
        "surreal",
        "compose-check",
    ] {
        let doc = described.get(recipe).unwrap_or_else(|| panic!("the justfile has no `{recipe}` recipe"));
        assert!(doc.as_ref().is_some_and(|d| d.len() > 10), "`{recipe}` needs a one-line `# ` description above it");
    }
    for (name, doc) in &described {
        assert!(doc.is_some(), "recipe `{name}` has no description for `just --list`");
    }
}
