//! moto server on 127.0.0.1, started by the tests themselves and stopped on drop.
//!
//! The binary is the project-local one (`.venv/bin/moto_server`, installed by the README's
//! commands) unless `GREENLIGHT_MOTO_SERVER` names another.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn moto_binary() -> PathBuf {
    std::env::var_os("GREENLIGHT_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"))
}

impl MotoServer {
    pub async fn start() -> Self {
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "moto_server not found at {} — run ./scripts/test (it installs moto into .venv)",
            binary.display()
        );
        let port = free_port();
        let log_dir = workspace_root().join("target/greenlight-logs");
        std::fs::create_dir_all(&log_dir).ok();
        let log =
            std::fs::File::create(log_dir.join(format!("moto-{port}.log"))).expect("moto log file");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = Self { child, endpoint };
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(resp) = http
                .get(format!("{}/moto-api/", server.endpoint))
                .send()
                .await
            {
                if resp.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
