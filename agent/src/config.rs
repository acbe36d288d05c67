//! A device's configuration file (`myscanner-agent run --config device.toml`):
//!
//! ```toml
//! credential = "mysd_…"                 # the device credential from provisioning
//! api_url = "https://myscanner.example" # default http://127.0.0.1:8080
//! outbox_dir = "/var/lib/myscanner/outbox"
//! ca_file = "/etc/myscanner/ca.pem"     # the only CA trusted for https, wss and amqps
//!                                       # (optional: the platform's roots otherwise)
//! allow_insecure = false                # plain http/ws/amqp beyond this machine (never in production)
//! internal_scan_allowed = ["192.0.2.0/24"]  # local networks internal scans may sweep
//! remote_control_target = "127.0.0.1:5900"  # the one local service remote sessions reach
//! sync_dir = "/var/lib/myscanner/sync"      # the site's reference scans and lists, kept locally
//! [settings]                            # what the scanner's owner enabled
//! measurement_transfer = true
//! allow_remote_control = false
//! reference_scan_sync = false
//! load_list_sync = false
//! ```
//!
//! The files `myscanner admin demo` writes (serial, device_id, credential) are valid too.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::api::Settings;

/// Unknown keys are refused: a misspelt `ca_file` must not quietly mean "trust the platform".
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub credential: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Defaults to `.local/outbox/<serial or file name>`.
    pub outbox_dir: Option<PathBuf>,
    /// The CA that must have signed MyScanner's and the broker's certificates; without it
    /// the platform's root store is trusted.
    pub ca_file: Option<PathBuf>,
    /// Accept plain `http://`, `ws://` and `amqp://` to hosts other than this machine (a
    /// warning is logged at every start). Loopback hosts never need it.
    #[serde(default)]
    pub allow_insecure: bool,
    #[serde(default)]
    pub settings: Settings,
    /// The local networks internal security scans may sweep (CIDR). Empty, the default:
    /// the agent sweeps nothing and reports why.
    #[serde(default)]
    pub internal_scan_allowed: Vec<ipnet::Ipv4Net>,
    /// The one local service remote sessions are connected to (VNC by default); the
    /// agent connects them to nothing else.
    #[serde(default = "default_remote_control_target")]
    pub remote_control_target: std::net::SocketAddr,
    /// Where the local copies of the site's reference scans and load lists live.
    /// Defaults to `.local/sync/<serial or file name>`.
    pub sync_dir: Option<PathBuf>,
    /// Seconds a cloud feature refused for the workgroup's subscription waits before asking
    /// again (default 600).
    #[serde(default = "default_cloud_recheck_secs")]
    pub cloud_recheck_secs: u64,
    /// Informational, as written by `myscanner admin demo`.
    pub serial: Option<String>,
    pub device_id: Option<uuid::Uuid>,
}

fn default_remote_control_target() -> std::net::SocketAddr {
    crate::tunnel::DEFAULT_TARGET.parse().expect("a socket address")
}

fn default_cloud_recheck_secs() -> u64 {
    crate::api::CLOUD_RECHECK.as_secs()
}

fn default_api_url() -> String {
    "http://127.0.0.1:8080".to_owned()
}

impl std::fmt::Debug for DeviceConfig {
    /// The credential is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("credential", &"[redacted]")
            .field("api_url", &self.api_url)
            .field("outbox_dir", &self.outbox_dir)
            .field("ca_file", &self.ca_file)
            .field("allow_insecure", &self.allow_insecure)
            .field("settings", &self.settings)
            .field("internal_scan_allowed", &self.internal_scan_allowed)
            .field("remote_control_target", &self.remote_control_target)
            .field("sync_dir", &self.sync_dir)
            .field("cloud_recheck_secs", &self.cloud_recheck_secs)
            .field("serial", &self.serial)
            .finish()
    }
}

impl DeviceConfig {
    pub fn load(path: &Path) -> anyhow::Result<DeviceConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: DeviceConfig = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if config.outbox_dir.is_none() {
            let name = config
                .serial
                .clone()
                .unwrap_or_else(|| path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
            config.outbox_dir = Some(PathBuf::from(".local/outbox").join(&name));
            if config.sync_dir.is_none() {
                config.sync_dir = Some(PathBuf::from(".local/sync").join(name));
            }
        }
        Ok(config)
    }
}
