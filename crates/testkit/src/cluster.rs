//! A three-node nats-server cluster on loopback, from the shipped
//! `nats/cluster/n{1,2,3}.conf` with their ports and store directories
//! swapped for free ones, so the test exercises the files users run.

use std::process::Child;

use crate::{free_port, spawn, wait_for_ports_file, workspace_root};

/// Three `nats-server` processes forming the cluster `vigia`, killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    urls: Vec<String>,
    names: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each listens.
    ///
    /// # Panics
    /// When `nats-server` is missing or a node does not come up.
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let (mut nodes, mut urls, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..3 {
            let shipped = workspace_root().join(format!("nats/cluster/n{}.conf", i + 1));
            let mut conf = std::fs::read_to_string(&shipped).expect("nats/cluster/nN.conf");
            for j in 0..3 {
                conf = conf.replace(&format!("127.0.0.1:423{}", j + 1), &format!("127.0.0.1:{}", client[j]));
                conf = conf.replace(&format!("127.0.0.1:623{}", j + 1), &format!("127.0.0.1:{}", route[j]));
            }
            // No monitoring port in tests; each node's store in the temp dir.
            conf = conf.replace(&format!("http: 127.0.0.1:823{}", i + 1), "");
            let store = dir.path().join(format!("n{}", i + 1));
            conf = conf.replace(&format!("./data/cluster/n{}", i + 1), &store.display().to_string());
            let node_dir = dir.path().join(format!("node{}", i + 1));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let conf_path = node_dir.join("nats.conf");
            std::fs::write(&conf_path, conf).expect("write node conf");
            let child = spawn(&conf_path, &node_dir, &[]);
            urls.push(wait_for_ports_file(&node_dir, child.id()));
            nodes.push(Some(child));
            names.push(format!("vigia-n{}", i + 1));
        }
        NatsCluster { nodes, urls, names, _dir: dir }
    }

    /// Every node's client URL, comma-separated, as clients take them.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Kills the node whose `server_name` is `name` (SIGKILL).
    ///
    /// # Panics
    /// When no running node has that name.
    pub fn kill(&mut self, name: &str) {
        let i = self.names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no node named {name}"));
        let mut child = self.nodes[i].take().unwrap_or_else(|| panic!("{name} is already down"));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
