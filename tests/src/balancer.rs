//! HAProxy (Debian's `haproxy`, which the test command installs) on loopback in front of
//! several replicas: what a deployment at scale puts between scanners, users and the
//! service. HTTP mode, round robin, `/readyz` health checks, WebSocket upgrades passed
//! through with a tunnel timeout as long as a tunnel's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running HAProxy balancing over some replicas; stopped on drop.
pub struct Balancer {
    /// Where clients reach the replicas: `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

const HAPROXY: &str = "/usr/sbin/haproxy";

impl Balancer {
    /// Balances over `replicas` (base URLs, `http://127.0.0.1:<port>`), each checked on
    /// `/readyz` every 200 ms: two failures take a replica out, one success puts it back.
    pub async fn start(replicas: &[&str]) -> Balancer {
        assert!(std::path::Path::new(HAPROXY).exists(), "haproxy is missing: deploy/scripts/test.sh installs it");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let address = url.strip_prefix("http://").expect("replicas serve plain HTTP here");
                format!("    server replica{i} {address} check\n")
            })
            .collect();
        let config = format!(
            "global
    maxconn 2000
defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # Remote-control tunnels and sessions, once upgraded, stay open for as long as they are used.
    timeout tunnel 1h
frontend api
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 200ms fall 2 rise 1
{servers}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-db") // in the foreground, logging to stderr
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let balancer = Balancer { url: format!("http://127.0.0.1:{port}"), child, _dir: dir };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{}/readyz", balancer.url)).send().await.is_ok_and(|r| r.status().is_success()) {
                return balancer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("haproxy did not come up on {}", balancer.url);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
