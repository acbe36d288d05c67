//! The reference implementation of the scanner side of MyScanner Cloud, written as if it
//! ran on a real LVS/MPS: it learns who it is, reports its settings, and uploads every
//! measurement through a durable outbox with publisher confirms. `simulate` runs a fleet of
//! such agents with realistic measurements, for demos, tests and benchmarks.

pub mod api;
pub mod arp;
pub mod backoff;
pub mod config;
pub mod internal_scans;
pub mod network_scan;
pub mod outbox;
pub mod publisher;
pub mod simulate;
pub mod sync;
pub mod tunnel;

use std::sync::Arc;

use anyhow::Context;
use myscanner_protocol::MeasurementV1;
use myscanner_protocol::sync::Collection;
use myscanner_protocol::tls;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use api::{Api, Identity, Refused};
use backoff::Backoff;
use config::DeviceConfig;
use outbox::Outbox;
use publisher::Publisher;

/// The exit status when the agent gives up on what retrying cannot mend — a refused
/// credential, a broken device file (sysexits' EX_CONFIG): the systemd unit does not restart
/// it until someone has put it right.
pub const GAVE_UP: u8 = 78;

/// Identifies the device and reports its settings, trying again with the cloud's backoff
/// for as long as MyScanner cannot be reached; each failure is logged with what it means.
async fn reach_cloud(api: &Api, settings: api::Settings) -> anyhow::Result<Identity> {
    let mut backoff = Backoff::cloud();
    loop {
        let attempt = async {
            let identity = api.me().await.context("identifying the device")?;
            api.report_settings(settings).await.context("reporting settings")?;
            anyhow::Ok(identity)
        };
        match attempt.await {
            Ok(identity) => return Ok(identity),
            Err(error) if Refused::is_permanent(&error) => return Err(error),
            Err(error) => tracing::warn!(error = tls::describe(&error), "cannot reach MyScanner yet; trying again"),
        }
        backoff.sleep().await;
    }
}

/// A running agent.
pub struct Agent {
    pub identity: Identity,
    pub config: DeviceConfig,
    outbox: Arc<Outbox>,
    shutdown: CancellationToken,
    publisher: Option<JoinHandle<()>>,
    internal_scans: JoinHandle<()>,
    api: Api,
    /// The remote-control tunnel, while remote control is allowed: its stop and its task.
    tunnel: Option<(CancellationToken, JoinHandle<()>)>,
    /// The site's reference scans and load lists, for the syncs enabled on the scanner.
    syncs: Vec<(Arc<sync::SyncReplica>, JoinHandle<()>)>,
}

impl Agent {
    /// Identifies the device, reports its settings, opens the outbox and — when
    /// measurement transfer is enabled — starts uploading. While MyScanner cannot be reached
    /// (network, TLS, an overloaded or restarting service) it keeps trying with the cloud's
    /// backoff; it gives up only on what trying again cannot mend: an unsafe or unreadable
    /// configuration, or a credential the cloud refuses.
    pub async fn start(config: DeviceConfig) -> anyhow::Result<Agent> {
        let link = tls::check_link(&config.api_url, config.allow_insecure)?;
        if config.allow_insecure {
            tracing::warn!(api_url = %config.api_url, insecure = link == tls::Link::Insecure,
                "allow_insecure is set: links to MyScanner and its broker may be unencrypted");
        }
        let tls = tls::client_config_from_file(config.ca_file.as_deref())?;
        let mut api = Api::new(&config.api_url, &config.credential, tls.clone())?;
        api.cloud_recheck = std::time::Duration::from_secs(config.cloud_recheck_secs.max(1));
        let identity = reach_cloud(&api, config.settings).await?;
        if let Some(cloud) = identity.cloud_features.as_ref().filter(|c| !c.available) {
            tracing::warn!(subscription = %cloud.subscription_status, "{}", cloud.message);
        }
        let dir = config.outbox_dir.clone().context("outbox_dir")?;
        let outbox = Arc::new(Outbox::open(&dir).with_context(|| format!("opening outbox {}", dir.display()))?);
        let shutdown = CancellationToken::new();
        let publisher = config.settings.measurement_transfer.then(|| {
            let publisher = Publisher {
                outbox: outbox.clone(),
                access: identity.broker.clone(),
                password: config.credential.clone(),
                tls,
                allow_insecure: config.allow_insecure,
                connection_name: format!("agent {}", identity.serial),
            };
            tokio::spawn(publisher.run(shutdown.clone()))
        });
        // Internal security scans are the workgroup's to schedule; the agent always listens.
        let internal_scans =
            tokio::spawn(internal_scans::run(api.clone(), config.internal_scan_allowed.clone(), shutdown.clone()));
        tracing::info!(device = %identity.device_id, serial = %identity.serial, transfer = config.settings.measurement_transfer, "agent started");
        let mut syncs = vec![];
        let enabled = [
            (Collection::ReferenceScans, config.settings.reference_scan_sync),
            (Collection::LoadLists, config.settings.load_list_sync),
        ];
        for (collection, _) in enabled.into_iter().filter(|(_, on)| *on) {
            let dir = config.sync_dir.clone().unwrap_or_else(|| dir.join("sync"));
            let replica = sync::SyncReplica::open(api.clone(), collection, &dir, identity.site_id)?;
            syncs.push((replica.clone(), tokio::spawn(replica.run(shutdown.clone()))));
        }
        let mut agent =
            Agent { identity, config, outbox, shutdown, publisher, internal_scans, api, tunnel: None, syncs };
        agent.follow_remote_control();
        Ok(agent)
    }

    /// The local copy of a collection, when its sync is enabled.
    pub fn sync(&self, collection: Collection) -> Option<Arc<sync::SyncReplica>> {
        self.syncs.iter().find(|(r, _)| r.collection == collection).map(|(r, _)| r.clone())
    }

    /// Switches remote control on the scanner: reports it, then opens or closes the
    /// tunnel (the cloud refuses sessions from the report on).
    pub async fn set_remote_control(&mut self, allowed: bool) -> anyhow::Result<()> {
        self.config.settings.allow_remote_control = allowed;
        self.api.report_settings(self.config.settings).await.context("reporting settings")?;
        self.follow_remote_control();
        Ok(())
    }

    /// Holds the tunnel while remote control is allowed, and only then.
    fn follow_remote_control(&mut self) {
        match (self.config.settings.allow_remote_control, &self.tunnel) {
            (true, None) => {
                let stop = self.shutdown.child_token();
                let task = tokio::spawn(tunnel::run(self.api.clone(), self.config.remote_control_target, stop.clone()));
                self.tunnel = Some((stop, task));
            }
            (false, Some(_)) => {
                if let Some((stop, _)) = self.tunnel.take() {
                    stop.cancel();
                }
            }
            _ => {}
        }
    }

    /// Records measurements durably for upload. With measurement transfer disabled on the
    /// scanner they stay on the scanner: nothing is queued and `false` is returned.
    pub fn record(&self, measurements: &[MeasurementV1]) -> anyhow::Result<bool> {
        if !self.config.settings.measurement_transfer {
            return Ok(false);
        }
        let records: Vec<Vec<u8>> = measurements.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?;
        self.outbox.append(&records)?;
        Ok(true)
    }

    /// Measurements recorded and not yet confirmed by the broker.
    pub fn pending(&self) -> u64 {
        self.outbox.pending()
    }

    /// Waits until every recorded measurement is confirmed, up to `timeout`.
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending() > 0 {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops uploading; what is unconfirmed stays in the outbox for the next start.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(publisher) = self.publisher.take() {
            let _ = publisher.await;
        }
        let _ = (&mut self.internal_scans).await;
        if let Some((_, task)) = self.tunnel.take() {
            let _ = task.await;
        }
        for (_, task) in self.syncs.drain(..) {
            let _ = task.await;
        }
    }
}
