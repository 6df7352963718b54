//! The real binary as a child process: a clean environment, and a running `serve` whose port is
//! read from its first log line.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::helpers::SECRET;

pub const BIN: &str = env!("CARGO_BIN_EXE_fluid-webhooks");

/// The binary with a clean environment: PATH, HOME and the given variables only.
pub fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(vars.iter().copied()).kill_on_drop(true);
    command
}

/// A running `fluid-webhooks serve`.
pub struct Service {
    pub child: Child,
    pub address: String,
    logs: Arc<Mutex<String>>,
    /// Reads the service's log lines until its stderr closes.
    reader: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
}

impl Service {
    /// Starts the service and waits for its "listening" line (JSON logs) to learn its port.
    pub async fn start(vars: &[(&str, &str)], cwd: Option<&Path>) -> Self {
        let mut all = vec![
            ("FLUID_WEBHOOK_SECRET", SECRET),
            ("PORT", "0"),
            ("FLUID_WEBHOOKS_LOG__FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("FLUID_WEBHOOKS_LIMITS__RATE_PER_SECOND", "0"),
        ];
        all.extend_from_slice(vars);
        let mut command = command(&all);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the service");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let logs = Arc::new(Mutex::new(String::new()));
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                logs.lock().expect("lock").push_str(&format!("{line}\n"));
                let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(address) = parsed["address"].as_str() {
                    return format!("http://{address}");
                }
            }
            panic!(
                "the service exited before listening:\n{}",
                logs.lock().expect("lock")
            );
        })
        .await
        .expect("the service listens within 60 s");
        let sink = logs.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        Self {
            child,
            address,
            logs,
            reader,
            client: reqwest::Client::new(),
        }
    }

    /// Posts `body` to `/webhooks/fluid` signed with the test secret; returns the status.
    pub async fn post(&self, body: &str) -> u16 {
        let sig = fluid_webhooks::intake::signature::sign(
            &fluid_webhooks::secret::Secret::new(SECRET),
            body.as_bytes(),
        );
        self.client
            .post(format!("{}/webhooks/fluid", self.address))
            .header("x-fluid-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        // The process has exited: its stderr is closed, so the reader ends once it has every line.
        let reader = std::mem::replace(&mut self.reader, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the last log lines are read")
            .expect("the log reader");
        (status.code(), self.logs())
    }
}
