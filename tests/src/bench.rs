//! Shared pieces of the benchmark harness: the service as a separate process (so its
//! memory can be read), figures, and percentiles.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use myscanner::config::Config;

/// The release `myscanner` binary serving `config` in a process of its own.
pub struct ServiceProcess {
    child: Child,
    pub base_url: String,
    /// What its clients trust (the test CA of `server.tls`, or the platform's roots).
    pub tls: std::sync::Arc<rustls::ClientConfig>,
}

impl ServiceProcess {
    pub async fn start(config: &Config) -> ServiceProcess {
        Self::start_trusting(config, myscanner_protocol::tls::platform_client_config()).await
    }

    /// Serves `config` (its roles and `server.tls` included); clients trust `tls`.
    pub async fn start_trusting(config: &Config, tls: std::sync::Arc<rustls::ClientConfig>) -> ServiceProcess {
        let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/myscanner");
        assert!(binary.exists(), "build it first: cargo build --release -p myscanner");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(binary);
        if let Some(server_tls) = &config.server.tls {
            command
                .env("MYSCANNER_SERVER__TLS__CERT_FILE", &server_tls.cert_file)
                .env("MYSCANNER_SERVER__TLS__KEY_FILE", &server_tls.key_file);
        }
        let child = command
            .arg("serve")
            .env("MYSCANNER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MYSCANNER_INGEST__ENABLED", config.ingest.enabled.to_string())
            .env("MYSCANNER_SECURITY__SCHEDULER", config.security.scheduler.to_string())
            .env("MYSCANNER_SECURITY__WORKERS", config.security.workers.to_string())
            .env("MYSCANNER_DATABASE__URL", config.database.url.expose())
            .env("MYSCANNER_BROKER__URL", config.broker.url.expose())
            .env("MYSCANNER_BROKER__DEVICE_URL", &config.broker.device_url)
            .env("MYSCANNER_BROKER__DEVICE_USER_PREFIX", &config.broker.device_user_prefix)
            .env("MYSCANNER_AUTH__JWT_SECRET", config.auth.jwt_secret.expose())
            .env("MYSCANNER_LOG__FILTER", "warn")
            // Its own metrics port: a service already running here holds the default one.
            .env("MYSCANNER_METRICS__LISTEN", "127.0.0.1:0")
            // Benchmarks measure the service, not its rate limit.
            .env("MYSCANNER_SERVER__RATE_LIMIT_PER_MINUTE", "100000000")
            .env("MYSCANNER_SERVER__RATE_LIMIT_BURST", "100000")
            .stdout(Stdio::null())
            .spawn()
            .expect("start myscanner");
        let scheme = if config.server.tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://127.0.0.1:{port}");
        let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
        let service = ServiceProcess { child, base_url, tls };
        for _ in 0..400 {
            if client.get(format!("{}/readyz", service.base_url)).send().await.is_ok_and(|r| r.status().is_success()) {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready");
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") / 1024.0
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    fn status_kib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl ServiceProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU time (user + system, in seconds) of the processes a benchmark involves: the broker
/// (RabbitMQ's `beam.smp`), the database (every `postgres` process), the service, and
/// this harness (where the agents and clients run). Summed over processes alive at the
/// reading; a database connection that ends between two readings takes its time with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub broker: f64,
    pub database: f64,
    pub service: f64,
    pub harness: f64,
}

impl CpuTimes {
    pub fn now(service_pid: u32) -> CpuTimes {
        let ticks = 100.0; // USER_HZ: what /proc counts in, on every Linux platform we run on
        let own = std::process::id();
        let mut times = CpuTimes::default();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ...`: the command may hold spaces, so split at the last ')'.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let used = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            let seconds = (used(11) + used(12)) / ticks;
            match &stat[open + 1..close] {
                _ if pid == service_pid => times.service += seconds,
                _ if pid == own => times.harness += seconds,
                comm if comm.starts_with("beam") => times.broker += seconds,
                comm if comm.starts_with("postgres") => times.database += seconds,
                _ => {}
            }
        }
        times
    }

    /// All of it, in CPU seconds.
    pub fn total(&self) -> f64 {
        self.broker + self.database + self.service + self.harness
    }

    /// CPU seconds as microseconds per item, with the cores busy over `seconds` (`self`
    /// being what was used meanwhile: a difference of two readings, or a sum of them).
    pub fn per_item(&self, items: usize, seconds: f64) -> String {
        let us = |used: f64| used * 1e6 / items as f64;
        format!(
            "broker {:.0} µs, database {:.0} µs, service {:.0} µs, agents/clients {:.0} µs ({:.2} cores busy)",
            us(self.broker),
            us(self.database),
            us(self.service),
            us(self.harness),
            self.total() / seconds
        )
    }
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;
    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            broker: self.broker - earlier.broker,
            database: self.database - earlier.database,
            service: self.service - earlier.service,
            harness: self.harness - earlier.harness,
        }
    }
}

impl std::ops::AddAssign for CpuTimes {
    fn add_assign(&mut self, used: CpuTimes) {
        self.broker += used.broker;
        self.database += used.database;
        self.service += used.service;
        self.harness += used.harness;
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p`-th percentile (0–100) of unsorted samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank]
}
