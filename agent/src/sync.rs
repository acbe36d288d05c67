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

use crate::api::Api;

/// Seconds a pull waits for a change.
const LONG_POLL_SECS: u64 = 25;

#[derive(Default, Serialize, Deserialize)]
struct Local {
    /// The site revision this copy is complete up to.
    revision: i64,
    /// Whether the copy was ever filled (from a snapshot or from revision 0).
    restored: bool,
    /// Every record known, tombstones included (so a delete is never undone locally).
    records: BTreeMap<Uuid, Versioned>,
    /// Local edits the cloud has not answered yet, one per record, oldest first.
    pending: Vec<Edit>,
}

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
    pub fn open(api: Api, collection: Collection, dir: &Path) -> anyhow::Result<Arc<SyncReplica>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", collection.as_str()));
        let local: Local = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Local::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
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
        {
            let mut local = self.local.lock().expect("sync lock");
            // An edit of a record with one still waiting continues that one's line.
            let base_revision = match local.pending.iter().find(|e| e.id == id) {
                Some(waiting) => waiting.base_revision,
                None => local.records.get(&id).map_or(0, |v| v.revision),
            };
            local.pending.push(Edit { id, base_revision, record: record.clone() });
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
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let step = tokio::select! {
                () = shutdown.cancelled() => break,
                step = self.step() => step,
            };
            match step {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(collection = self.collection.as_str(), error = format!("{error:#}"), "sync failed");
                    let wait = Duration::from_millis(250 << failures.min(6));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
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
        self.push().await?;
        let since = self.local.lock().expect("sync lock").revision;
        let changes = tokio::select! {
            changes = self.api.sync_pull(self.collection, since, LONG_POLL_SECS) => changes?,
            () = self.edited.notified() => return Ok(()),
        };
        let mut local = self.local.lock().expect("sync lock");
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

    /// Sends the waiting edits, the latest of each record on its line's base, and takes the
    /// cloud's answers. Edits made while the push was out are rebased on the winner, or
    /// dropped when their line lost.
    async fn push(&self) -> anyhow::Result<()> {
        let (sent, edits) = {
            let local = self.local.lock().expect("sync lock");
            let mut latest: Vec<Edit> = vec![];
            for edit in &local.pending {
                match latest.iter_mut().find(|e| e.id == edit.id) {
                    Some(line) => line.record = edit.record.clone(),
                    None => latest.push(edit.clone()),
                }
            }
            (local.pending.len(), latest)
        };
        if edits.is_empty() {
            return Ok(());
        }
        let result = self.api.sync_push(self.collection, &edits).await?;
        let mut local = self.local.lock().expect("sync lock");
        local.pending.drain(..sent);
        for (edit, outcome) in edits.iter().zip(result.outcomes) {
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
        self.persist(&local)
    }
}
