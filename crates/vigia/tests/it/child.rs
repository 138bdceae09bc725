//! `vigia` itself as a child process, for tests that kill it or that need
//! its own file descriptors and memory measured apart from the test's.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// A `vigia` child process, killed on drop.
pub(crate) struct Vigia(Child);

impl Vigia {
    pub(crate) fn start(dir: &Path, command: &str) -> Vigia {
        Vigia::spawn(dir, command, &[command], &[])
    }

    /// `vigia --config vigia.toml <args>` in `dir` with `env` set, its
    /// standard error (the logs) in `<dir>/<name>.log` and its standard
    /// output in `<dir>/<name>.out`.
    pub(crate) fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Vigia {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let out = std::fs::File::create(dir.join(format!("{name}.out"))).expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_vigia"))
            .current_dir(dir)
            .args(["--config", "vigia.toml"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("start the vigia binary");
        Vigia(child)
    }

    /// Waits for the process to exit on its own, at most `limit`.
    #[cfg(feature = "remote-store")]
    pub(crate) fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("vigia did not exit within {limit:?}");
    }

    pub(crate) fn sigkill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

    pub(crate) fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        for _ in 0..300 {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("vigia did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Vigia {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Vigia {
    /// Resident and peak resident memory in KiB, from `/proc/<pid>/status`.
    pub(crate) fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).expect("/proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in {status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}
