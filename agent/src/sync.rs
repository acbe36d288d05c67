//! The scanner's copy of its site's reference scans or load detail lists, kept in step with
//! the other scanners of the site through the cloud (rules in `myscanner_protocol::sync`).
//!
//! Local edits apply at once and wait in a persisted queue until the cloud has them (so a
//! scanner offline keeps working); the cloud's answer replaces the local record, whether the
//! edit won or lost. Remote changes arrive by long poll. The copy, its revision and the
//! queue survive restarts in one JSON file, written atomically; a scanner with no copy
//! restores the site's snapshot first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use myscanner_protocol::sync::{Collection, Edit, Record, Versioned};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::{Api, Refused};
use crate::backoff::Backoff;
use myscanner_protocol::tls;
use reqwest::StatusCode;

/// Seconds a pull waits for a change.
const LONG_POLL_SECS: u64 = 25;

#[derive(Default, Serialize, Deserialize)]
struct Local {
    /// The site this copy is of: a scanner moved to another site starts afresh.
    site_id: Option<Uuid>,
    /// The site revision this copy is complete up to.
    revision: i64,
    /// Whether the copy was ever filled (from a snapshot or from revision 0).
    restored: bool,
    /// Every record known, tombstones included (so a delete is never undone locally).
    records: BTreeMap<Uuid, Versioned>,
    /// Local edits the cloud has not answered yet, oldest first; one per record but for a
    /// record whose edit is out in a push and was edited again meanwhile.
    pending: Vec<Edit>,
    /// How many of `pending` are out in a push now.
    #[serde(skip)]
    in_flight: usize,
}

/// A push carries at most this many edits, and stops adding edits at this many bytes (under
/// the API's body limit; a reference scan can be most of a megabyte on its own).
const PUSH_EDITS: usize = 100;
const PUSH_BYTES: usize = 512 * 1024;

pub struct SyncReplica {
    pub collection: Collection,
    api: Api,
    path: PathBuf,
    local: Mutex<Local>,
    edited: Notify,
    revision: watch::Sender<i64>,
}

impl SyncReplica {
    /// Opens the copy kept in `dir` (empty if there is none yet).
    pub fn open(api: Api, collection: Collection, dir: &Path, site_id: Uuid) -> anyhow::Result<Arc<SyncReplica>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", collection.as_str()));
        let mut local: Local = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Local::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if local.site_id != Some(site_id) {
            // Another site's records, revision and edits mean nothing here.
            if local.site_id.is_some() {
                tracing::warn!(collection = collection.as_str(), "the scanner moved site: restoring afresh");
            }
            local = Local { site_id: Some(site_id), ..Local::default() };
        }
        let (revision, _) = watch::channel(local.revision);
        Ok(Arc::new(SyncReplica { collection, api, path, local: Mutex::new(local), edited: Notify::new(), revision }))
    }

    /// The site revision the copy is complete up to; watch it to see changes arrive.
    pub fn revision(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The live record, local edits included.
    pub fn get(&self, id: Uuid) -> Option<Record> {
        self.local.lock().expect("sync lock").records.get(&id).and_then(|v| v.record.clone())
    }

    /// Every live record, by id.
    pub fn records(&self) -> Vec<(Uuid, Record)> {
        let local = self.local.lock().expect("sync lock");
        local.records.values().filter_map(|v| Some((v.id, v.record.clone()?))).collect()
    }

    /// Edits locally now; the cloud learns of it as soon as it can be reached.
    pub fn put(&self, id: Uuid, record: Record) -> anyhow::Result<()> {
        self.edit(id, Some(record))
    }

    pub fn delete(&self, id: Uuid) -> anyhow::Result<()> {
        self.edit(id, None)
    }

    fn edit(&self, id: Uuid, record: Option<Record>) -> anyhow::Result<()> {
        if let Some(record) = &record {
            anyhow::ensure!(record.collection() == self.collection, "not a record of {}", self.collection.as_str());
            record.validate().map_err(|(field, why)| anyhow::anyhow!("{field}: {why}"))?;
        }
        {
            let mut local = self.local.lock().expect("sync lock");
            let edit_id = Uuid::now_v7();
            let in_flight = local.in_flight;
            if let Some(waiting) = local.pending[in_flight..].iter_mut().find(|e| e.id == id) {
                // Not sent yet: the newer edit replaces it, on the same base.
                waiting.record = record.clone();
                waiting.edit_id = edit_id;
            } else {
                // An edit of a record with one out in a push continues that one's line.
                let base_revision = match local.pending.iter().find(|e| e.id == id) {
                    Some(out) => out.base_revision,
                    None => local.records.get(&id).map_or(0, |v| v.revision),
                };
                local.pending.push(Edit { edit_id, id, base_revision, record: record.clone() });
            }
            let entry = local.records.entry(id).or_insert_with(|| Versioned {
                id,
                revision: 0,
                deleted: false,
                record: None,
                changed_by_device: None,
                changed_by_user: None,
                changed_at: chrono::Utc::now(),
            });
            entry.deleted = record.is_none();
            entry.record = record;
            self.persist(&local)?;
        }
        self.edited.notify_one();
        Ok(())
    }

    fn persist(&self, local: &Local) -> anyhow::Result<()> {
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(local)?)?;
        std::fs::rename(&temporary, &self.path)?;
        Ok(())
    }

    /// Keeps the copy in step until `shutdown`, retrying with backoff while the cloud is away.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // A site's edits should reach it soon after an outage: a lower ceiling than the cloud's.
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(16));
        while !shutdown.is_cancelled() {
            let step = tokio::select! {
                () = shutdown.cancelled() => break,
                step = self.step() => step,
            };
            match step {
                Ok(()) => backoff.succeeded(),
                Err(error) if Refused::is_subscription_inactive(&error) => {
                    if !self.api.wait_for_subscription(self.collection.as_str(), &shutdown).await {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(collection = self.collection.as_str(), error = tls::describe(&error), "sync failed");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// Restores if need be, pushes what waits, then pulls (until a change arrives, the long
    /// poll ends, or a local edit wants pushing).
    async fn step(&self) -> anyhow::Result<()> {
        if !self.local.lock().expect("sync lock").restored {
            self.restore().await?;
        }
        // Pulling goes on whatever became of the push: one never holds the other up.
        if let Err(error) = self.push().await {
            tracing::warn!(collection = self.collection.as_str(), error = format!("{error:#}"), "sync push failed");
        }
        let since = self.local.lock().expect("sync lock").revision;
        let changes = tokio::select! {
            changes = self.api.sync_pull(self.collection, since, LONG_POLL_SECS) => changes?,
            () = self.edited.notified() => return Ok(()),
        };
        let mut local = self.local.lock().expect("sync lock");
        if changes.changes.is_empty() && changes.revision <= local.revision {
            return Ok(()); // a long poll that ended quietly: nothing to write
        }
        for change in changes.changes {
            // A record with a local edit waiting keeps showing it until the cloud answers.
            if !local.pending.iter().any(|e| e.id == change.id) {
                local.records.insert(change.id, change);
            }
        }
        local.revision = local.revision.max(changes.revision);
        self.persist(&local)?;
        self.revision.send_replace(local.revision);
        Ok(())
    }

    /// A new or replaced scanner: the site's live records, page by page, then changes from
    /// the first page's revision on.
    async fn restore(&self) -> anyhow::Result<()> {
        let mut records = BTreeMap::new();
        let mut after = None;
        let mut revision = None;
        loop {
            let page = self.api.sync_snapshot(self.collection, after).await?;
            revision.get_or_insert(page.revision);
            records.extend(page.records.into_iter().map(|v| (v.id, v)));
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut local = self.local.lock().expect("sync lock");
        // Edits made before the first restore stay queued, on top of what the site has.
        for (id, record) in records {
            local.records.entry(id).or_insert(record);
        }
        local.revision = revision.unwrap_or(0);
        local.restored = true;
        self.persist(&local)?;
        self.revision.send_replace(local.revision);
        tracing::info!(collection = self.collection.as_str(), records = local.records.len(), "sync restored");
        Ok(())
    }

    /// Sends the waiting edits, a bounded batch at a time, and takes the cloud's answers.
    /// Edits made while a batch was out are rebased on the winner, or dropped when their
    /// line lost. A batch the cloud refuses outright (never expected: edits are validated
    /// here first) is dropped rather than left to block every later edit.
    async fn push(&self) -> anyhow::Result<()> {
        loop {
            let batch = {
                let mut local = self.local.lock().expect("sync lock");
                let (mut bytes, mut batch) = (0, vec![]);
                for edit in local.pending.iter().take(PUSH_EDITS) {
                    bytes += serde_json::to_vec(edit).map_or(0, |b| b.len());
                    if !batch.is_empty() && bytes > PUSH_BYTES {
                        break;
                    }
                    batch.push(edit.clone());
                }
                local.in_flight = batch.len();
                batch
            };
            if batch.is_empty() {
                return Ok(());
            }
            let answered = self.api.sync_push(self.collection, &batch).await;
            let mut local = self.local.lock().expect("sync lock");
            local.in_flight = 0;
            let result = match answered {
                Ok(result) => result,
                Err(error) => match error.downcast_ref::<Refused>() {
                    Some(refused) if refused.status.is_client_error() && refused.status != StatusCode::CONFLICT => {
                        tracing::error!(collection = self.collection.as_str(), %refused, "edits refused; dropped");
                        local.pending.drain(..batch.len());
                        self.persist(&local)?;
                        continue;
                    }
                    _ => return Err(error),
                },
            };
            local.pending.drain(..batch.len());
            for (edit, outcome) in batch.iter().zip(result.outcomes) {
                let newer = local.pending.iter().any(|e| e.id == edit.id);
                if outcome.applied && newer {
                    for later in local.pending.iter_mut().filter(|e| e.id == edit.id) {
                        later.base_revision = outcome.current.revision;
                    }
                    continue;
                }
                if !outcome.applied {
                    tracing::info!(collection = self.collection.as_str(), id = %edit.id, "edit lost to an earlier one; taking the site's");
                    local.pending.retain(|e| e.id != edit.id);
                }
                local.records.insert(edit.id, outcome.current);
            }
            self.persist(&local)?;
        }
    }
}
