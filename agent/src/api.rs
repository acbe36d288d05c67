//! The agent's HTTPS calls to MyScanner Cloud, authenticated with the device credential.

use std::sync::Arc;

use myscanner_protocol::sync::{Changes, Collection, Edit, Push, PushResult, Snapshot};
use myscanner_protocol::tunnel;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub device_id: Uuid,
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub kind: String,
    pub serial: String,
    pub name: String,
    pub site_time_zone: String,
    pub broker: BrokerAccess,
    /// Whether its cloud features (remote control, sync) work: its workgroup's subscription.
    #[serde(default)]
    pub cloud_features: Option<CloudFeatures>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CloudFeatures {
    pub available: bool,
    pub subscription_status: String,
    /// What the scanner shows its operator.
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BrokerAccess {
    pub url: String,
    pub username: String,
    pub exchange: String,
    pub routing_key: String,
}

/// The scanner's MyScanner features, as set on the scanner: it is authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub measurement_transfer: bool,
    pub allow_remote_control: bool,
    pub reference_scan_sync: bool,
    pub load_list_sync: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            measurement_transfer: true,
            allow_remote_control: false,
            reference_scan_sync: false,
            load_list_sync: false,
        }
    }
}

/// An internal scan this device claimed.
#[derive(Debug, Clone, Deserialize)]
pub struct InternalScanJob {
    pub job_id: Uuid,
    pub attempt: i32,
    pub lease_secs: u64,
}

/// MyScanner answered, with an error status (as opposed to not answering at all).
#[derive(Debug)]
pub struct Refused {
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MyScanner answered {}: {}", self.status, self.body)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// Whether the cloud refused a cloud feature because the workgroup's subscription is not
    /// active: trying again before it is renewed only adds load, so callers wait
    /// [`Api::cloud_recheck`] instead of backing off as from a failure.
    pub fn is_subscription_inactive(error: &anyhow::Error) -> bool {
        error.downcast_ref::<Refused>().is_some_and(|refused| {
            refused.status == reqwest::StatusCode::PAYMENT_REQUIRED
                && refused.body.contains("urn:myscanner:problem:subscription-inactive")
        })
    }

    /// Whether trying again cannot help: the cloud refused the request itself (a revoked
    /// credential, a wrong address), as opposed to being busy or away.
    pub fn is_permanent(error: &anyhow::Error) -> bool {
        error.downcast_ref::<Refused>().is_some_and(|refused| {
            let status = refused.status;
            status.is_client_error()
                && status != reqwest::StatusCode::REQUEST_TIMEOUT
                && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        })
    }
}

/// MyScanner as this device reaches it: the base URL, the device credential, and the TLS
/// configuration every HTTPS and WSS link of the agent shares.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    credential: String,
    tls: Arc<rustls::ClientConfig>,
    /// How long a loop whose cloud feature was refused for the subscription waits before it
    /// asks again.
    pub cloud_recheck: std::time::Duration,
}

/// [`Api::cloud_recheck`] unless configured: a fleet of lapsed scanners asks a few times an hour.
pub const CLOUD_RECHECK: std::time::Duration = std::time::Duration::from_secs(600);

impl Api {
    pub fn new(base: &str, credential: &str, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            // The cloud never redirects a scanner; following one could carry the credential
            // somewhere else, or to plain HTTP.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credential: credential.to_owned(),
            tls,
            cloud_recheck: CLOUD_RECHECK,
        })
    }

    /// Opens a WebSocket to `path` (wss:// when the API is https://), as this device.
    pub async fn websocket(&self, path: &str) -> Result<tunnel::ClientSocket, tunnel::ConnectError> {
        tunnel::connect(&tunnel::websocket_url(&self.base, path), &self.credential, &self.tls).await
    }

    async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(Refused { status, body }.into())
    }

    /// After a refusal for the subscription: says so once, waits `cloud_recheck` (or until
    /// `shutdown`: then `false`).
    pub async fn wait_for_subscription(&self, what: &str, shutdown: &tokio_util::sync::CancellationToken) -> bool {
        tracing::warn!(
            feature = what,
            recheck_secs = self.cloud_recheck.as_secs(),
            "MyScanner cloud feature paused: the workgroup's subscription is not active; measurements are still \
             uploaded"
        );
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(self.cloud_recheck) => true,
        }
    }

    pub async fn me(&self) -> anyhow::Result<Identity> {
        let response =
            self.http.get(format!("{}/api/v1/agent/me", self.base)).bearer_auth(&self.credential).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }

    /// Waits up to `wait` for this device's next internal scan.
    pub async fn claim_internal_scan(&self, wait: std::time::Duration) -> anyhow::Result<Option<InternalScanJob>> {
        let url = format!("{}/api/v1/agent/security-scans/claim?wait={}", self.base, wait.as_secs());
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.credential)
            .timeout(wait + std::time::Duration::from_secs(10))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(Self::check(response).await?.json().await?))
    }

    /// `false`: the attempt was superseded; stop.
    pub async fn scan_heartbeat(&self, job: &InternalScanJob, progress: f32) -> anyhow::Result<bool> {
        let url = format!("{}/api/v1/agent/security-scans/{}/heartbeat", self.base, job.job_id);
        let body = serde_json::json!({"attempt": job.attempt, "progress": progress});
        self.fenced(self.http.post(url).bearer_auth(&self.credential).json(&body).send().await?).await
    }

    /// Reports the hosts found, or why the scan failed. `false`: superseded.
    pub async fn scan_report(
        &self,
        job: &InternalScanJob,
        hosts: Option<Vec<crate::network_scan::Host>>,
        error: Option<String>,
    ) -> anyhow::Result<bool> {
        let url = format!("{}/api/v1/agent/security-scans/{}/report", self.base, job.job_id);
        let body = serde_json::json!({"attempt": job.attempt, "hosts": hosts, "error": error});
        self.fenced(self.http.post(url).bearer_auth(&self.credential).json(&body).send().await?).await
    }

    async fn fenced(&self, response: reqwest::Response) -> anyhow::Result<bool> {
        if response.status() == reqwest::StatusCode::CONFLICT {
            return Ok(false);
        }
        Self::check(response).await?;
        Ok(true)
    }

    pub async fn report_settings(&self, settings: Settings) -> anyhow::Result<()> {
        let mut body = serde_json::to_value(settings)?;
        body["agent_version"] = env!("CARGO_PKG_VERSION").into();
        let response = self
            .http
            .put(format!("{}/api/v1/agent/settings", self.base))
            .bearer_auth(&self.credential)
            .json(&body)
            .send()
            .await?;
        Self::check(response).await?;
        Ok(())
    }

    pub async fn sync_pull(&self, collection: Collection, since: i64, wait: u64) -> anyhow::Result<Changes> {
        let url = format!("{}/api/v1/agent/sync/{}?since={since}&wait={wait}", self.base, collection.as_str());
        let response = self.http.get(url).bearer_auth(&self.credential).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }

    pub async fn sync_push(&self, collection: Collection, edits: &[Edit]) -> anyhow::Result<PushResult> {
        let url = format!("{}/api/v1/agent/sync/{}", self.base, collection.as_str());
        let body = Push { edits: edits.to_vec() };
        let response = self.http.post(url).bearer_auth(&self.credential).json(&body).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }

    pub async fn sync_snapshot(&self, collection: Collection, after: Option<Uuid>) -> anyhow::Result<Snapshot> {
        let mut url = format!("{}/api/v1/agent/sync/{}/snapshot?limit=5000", self.base, collection.as_str());
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        let response = self.http.get(url).bearer_auth(&self.credential).send().await?;
        Ok(Self::check(response).await?.json().await?)
    }
}
