//! Reference-scan and load-detail-list sync: the cloud is the hub (and the backup) of the
//! records the scanners of a site share. The rules are in `myscanner_protocol::sync`; here
//! are the store, the waiting of long polls, and the endpoints (`device`, `api`).
//!
//! Every change of a site takes the site's next revision while holding the site's counter
//! row, so changes commit in revision order and a pull "since N" never skips one. Writers
//! of one site are serialised by that row; sites do not wait for each other.

pub mod api;
pub mod device;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use myscanner_protocol::LoadProfile;
use myscanner_protocol::sync::{Collection, Edit, Outcome, Record, Snapshot, Versioned};
use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::{Error, FieldError, Result};

const CHANNEL: &str = "myscanner_sync";

/// Who made a change.
#[derive(Debug, Clone, Copy)]
pub enum Author {
    Device(Uuid),
    User(Uuid),
}

/// A record as stored, as the statements of [`query_records!`] read it.
struct Row {
    id: Uuid,
    revision: i64,
    deleted: bool,
    data: Option<serde_json::Value>,
    heights: Option<Vec<u8>>,
    changed_by_device: Option<Uuid>,
    changed_by_user: Option<Uuid>,
    changed_at: DateTime<Utc>,
    last_edit_id: Option<Uuid>,
    /// Bytes of the page up to and including this row (pages are bounded in bytes); none
    /// outside pages.
    running: Option<i64>,
}

/// A checked statement reading [`Row`]s: `query_records!(before, after, args…)` is
/// `before` + the record columns + `after`, which adds `running` (NULL outside pages).
macro_rules! query_records {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Row,
            $before
                + "id, revision, deleted, data, heights, changed_by_device, changed_by_user, changed_at, last_edit_id"
                + $after
            $(, $arg)*
        )
    };
}

/// Which pages of records: the changes since a revision, or the live records by id.
#[derive(Debug, Clone, Copy)]
enum Pages {
    Changes,
    Snapshot,
}

/// A page of records stops once it holds this many bytes (a reference scan's profile can
/// be most of a megabyte): pages stay small enough to build, send and time out on.
const PAGE_BYTES: i64 = 8 * 1024 * 1024;

/// `base_revision` of a dashboard edit that applies over whatever stands.
pub const ANY_REVISION: i64 = -1;

impl Row {
    fn into_versioned(self, collection: Collection) -> Result<Versioned> {
        let record = match self.data {
            None => None,
            Some(data) => Some(stored_record(collection, data, self.heights)?),
        };
        Ok(Versioned {
            id: self.id,
            revision: self.revision,
            deleted: self.deleted,
            record,
            changed_by_device: self.changed_by_device,
            changed_by_user: self.changed_by_user,
            changed_at: self.changed_at,
        })
    }
}

/// A record from its stored form: a reference scan's profile heights live apart.
fn stored_record(collection: Collection, mut data: serde_json::Value, heights: Option<Vec<u8>>) -> Result<Record> {
    let corrupt = |e: serde_json::Error| Error::Internal(anyhow::anyhow!("stored sync record unreadable: {e}"));
    Ok(match collection {
        Collection::LoadLists => Record::LoadList(serde_json::from_value(data).map_err(corrupt)?),
        Collection::ReferenceScans => {
            data["profile"]["encoding"] = json!(myscanner_protocol::profile::ENCODING);
            data["profile"]["heights"] = json!(STANDARD.encode(heights.unwrap_or_default()));
            Record::ReferenceScan(serde_json::from_value(data).map_err(corrupt)?)
        }
    })
}

/// A record's stored form, once it is known to be valid for `collection`.
fn storable(collection: Collection, record: &Record) -> Result<(serde_json::Value, Option<Vec<u8>>)> {
    let invalid = |field: &str, message: String| Error::Validation(vec![FieldError::new(field, message)]);
    let heights = record.checked().map_err(|(field, message)| invalid(&field, message))?;
    match (collection, record) {
        (Collection::ReferenceScans, Record::ReferenceScan(scan)) => {
            let LoadProfile { rows, cols, cell_size_mm, .. } = scan.profile;
            let data = json!({
                "truck_id": scan.truck_id.trim(), "truck_name": scan.truck_name.trim(),
                "tare_volume_m3": scan.tare_volume_m3,
                "profile": {"rows": rows, "cols": cols, "cell_size_mm": cell_size_mm},
            });
            Ok((data, heights))
        }
        (Collection::LoadLists, Record::LoadList(list)) => {
            Ok((serde_json::to_value(list).map_err(anyhow::Error::from)?, None))
        }
        _ => Err(invalid("record", format!("not a record of {}", collection.as_str()))),
    }
}

/// Applies `edits` to a site's collection in one transaction, in order, and wakes the
/// site's long polls (on every replica) when it commits.
pub async fn apply(
    db: &PgPool,
    workgroup_id: Uuid,
    site_id: Uuid,
    collection: Collection,
    edits: &[Edit],
    author: Author,
) -> Result<Vec<Outcome>> {
    // Validate everything first: a bad edit refuses the push and changes nothing.
    let stored: Vec<Option<(serde_json::Value, Option<Vec<u8>>)>> =
        edits.iter().map(|e| e.record.as_ref().map(|r| storable(collection, r)).transpose()).collect::<Result<_>>()?;
    let mut tx = db.begin().await?;
    // The site's counter row, locked for the transaction: writers of a site take turns.
    sqlx::query!(
        "INSERT INTO site_sync_revisions (site_id, workgroup_id) VALUES ($1, $2)
         ON CONFLICT (site_id) DO UPDATE SET revision = site_sync_revisions.revision",
        site_id,
        workgroup_id,
    )
    .execute(&mut *tx)
    .await?;
    let mut outcomes = Vec::with_capacity(edits.len());
    for (edit, stored) in edits.iter().zip(stored) {
        outcomes.push(apply_one(&mut tx, workgroup_id, site_id, collection, edit, stored, author).await?);
    }
    if outcomes.iter().any(|o| o.applied) {
        sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, site_id.to_string()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn apply_one(
    tx: &mut PgConnection,
    workgroup_id: Uuid,
    site_id: Uuid,
    collection: Collection,
    edit: &Edit,
    stored: Option<(serde_json::Value, Option<Vec<u8>>)>,
    author: Author,
) -> Result<Outcome> {
    let current = query_records!(
        "SELECT ",
        ", NULL::int8 AS running FROM sync_records WHERE site_id = $1 AND collection = $2 AND id = $3",
        site_id,
        collection.as_str(),
        edit.id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(current) = current {
        // The same edit again (its answer was lost): it is what stands.
        if current.last_edit_id == Some(edit.edit_id) {
            return Ok(Outcome { applied: true, current: current.into_versioned(collection)? });
        }
        // A tombstone stands for ever; any other change must be based on what stands now.
        if current.deleted || (edit.base_revision != ANY_REVISION && current.revision != edit.base_revision) {
            return Ok(Outcome { applied: false, current: current.into_versioned(collection)? });
        }
    }
    let (device, user) = match author {
        Author::Device(id) => (Some(id), None),
        Author::User(id) => (None, Some(id)),
    };
    let (data, heights) = stored.unzip();
    let row = query_records!(
        "WITH next AS (UPDATE site_sync_revisions SET revision = revision + 1 WHERE site_id = $1 RETURNING revision)
         INSERT INTO sync_records (site_id, collection, id, workgroup_id, revision, deleted, data, heights,
                                   changed_by_device, changed_by_user, changed_at, last_edit_id)
         SELECT $1, $2, $3, $4, next.revision, $5::jsonb IS NULL, $5, $6, $7, $8, now(), $9 FROM next
         ON CONFLICT (site_id, collection, id) DO UPDATE SET revision = EXCLUDED.revision,
             deleted = EXCLUDED.deleted, data = EXCLUDED.data, heights = EXCLUDED.heights,
             changed_by_device = EXCLUDED.changed_by_device, changed_by_user = EXCLUDED.changed_by_user,
             changed_at = EXCLUDED.changed_at, last_edit_id = EXCLUDED.last_edit_id
         RETURNING ",
        ", NULL::int8 AS running",
        site_id,
        collection.as_str(),
        edit.id,
        workgroup_id,
        data,
        heights.flatten(),
        device,
        user,
        edit.edit_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(Outcome { applied: true, current: row.into_versioned(collection)? })
}

/// Changes of a collection after revision `since`, oldest first: at most `limit`, and
/// about [`PAGE_BYTES`]; `true` when more are waiting.
pub async fn changes(
    db: &PgPool,
    site_id: Uuid,
    collection: Collection,
    since: i64,
    limit: i64,
) -> Result<(Vec<Versioned>, bool)> {
    let rows = page(db, Pages::Changes, site_id, collection, since, None, limit).await?;
    let (rows, more) = bounded(rows, limit);
    Ok((rows.into_iter().map(|r| r.into_versioned(collection)).collect::<Result<_>>()?, more))
}

/// A page of the live records, by id.
pub async fn snapshot(
    db: &PgPool,
    site_id: Uuid,
    collection: Collection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Snapshot> {
    let revision = head(db, site_id).await?;
    let rows = page(db, Pages::Snapshot, site_id, collection, 0, after, limit).await?;
    let (rows, more) = bounded(rows, limit);
    let next_after = if more { rows.last().map(|r| r.id) } else { None };
    let records = rows.into_iter().map(|r| r.into_versioned(collection)).collect::<Result<_>>()?;
    Ok(Snapshot { records, revision, next_after })
}

/// Up to `limit + 1` rows of `pages` after revision `since` and id `after`, each with the
/// page's running byte count; rows that would start beyond [`PAGE_BYTES`] are left for the
/// next page.
async fn page(
    db: &PgPool,
    pages: Pages,
    site_id: Uuid,
    collection: Collection,
    since: i64,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Row>> {
    // `$1` site, `$2` collection, `$3` after this revision, `$4` after this id, `$5` rows at most, `$6` bytes.
    let (collection, limit) = (collection.as_str(), limit + 1);
    Ok(match pages {
        Pages::Changes => {
            query_records!(
                "SELECT ",
                ", running FROM (
                     SELECT *, sum(size) OVER (ORDER BY revision) AS running
                     FROM sync_records,
                         LATERAL (SELECT coalesce(octet_length(heights), 0) + coalesce(octet_length(data::text), 0)
                                  AS size) AS weight
                     WHERE site_id = $1 AND collection = $2 AND revision > $3 AND ($4::uuid IS NULL OR id > $4)
                     LIMIT $5
                 ) page WHERE running - size < $6 ORDER BY revision",
                site_id,
                collection,
                since,
                after,
                limit,
                PAGE_BYTES,
            )
            .fetch_all(db)
            .await?
        }
        Pages::Snapshot => {
            query_records!(
                "SELECT ",
                ", running FROM (
                     SELECT *, sum(size) OVER (ORDER BY id) AS running
                     FROM sync_records,
                         LATERAL (SELECT coalesce(octet_length(heights), 0) + coalesce(octet_length(data::text), 0)
                                  AS size) AS weight
                     WHERE site_id = $1 AND collection = $2 AND revision > $3 AND ($4::uuid IS NULL OR id > $4)
                         AND NOT deleted
                     LIMIT $5
                 ) page WHERE running - size < $6 ORDER BY id",
                site_id,
                collection,
                since,
                after,
                limit,
                PAGE_BYTES,
            )
            .fetch_all(db)
            .await?
        }
    })
}

/// The rows of a page and whether more wait: beyond `limit`, or cut at the byte budget.
fn bounded(mut rows: Vec<Row>, limit: i64) -> (Vec<Row>, bool) {
    let mut more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if rows.last().and_then(|r| r.running).is_some_and(|bytes| bytes >= PAGE_BYTES) {
        more = true;
    }
    (rows, more)
}

/// The site's latest revision.
pub async fn head(db: &PgPool, site_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar!("SELECT revision FROM site_sync_revisions WHERE site_id = $1", site_id)
        .fetch_optional(db)
        .await?
        .unwrap_or(0))
}

/// Wakes the long polls waiting on a site when any replica commits a change to it.
#[derive(Clone, Default)]
pub struct Hub(Arc<Mutex<HashMap<Uuid, watch::Sender<()>>>>);

impl Hub {
    /// Subscribe before reading, so that a change committed in between is not missed.
    pub fn subscribe(&self, site_id: Uuid) -> watch::Receiver<()> {
        self.0.lock().expect("hub lock").entry(site_id).or_insert_with(|| watch::channel(()).0).subscribe()
    }

    fn wake_all(&self) {
        let mut sites = self.0.lock().expect("hub lock");
        sites.retain(|_, sender| {
            sender.send_replace(());
            sender.receiver_count() > 0
        });
    }

    fn wake(&self, site_id: Uuid) {
        let mut sites = self.0.lock().expect("hub lock");
        if let Some(sender) = sites.get(&site_id) {
            sender.send_replace(());
            if sender.receiver_count() == 0 {
                sites.remove(&site_id);
            }
        }
    }

    /// Listens for committed changes until `shutdown`; reconnects when the listener drops.
    /// A long poll that misses a wake-up still ends at its timeout and reads again.
    pub async fn run(self, db: PgPool, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                error = self.listen(&db) => tracing::warn!(%error, "sync notifications lost; reconnecting"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Wakes sites as their changes commit; returns only with the error that ended it.
    async fn listen(&self, db: &PgPool) -> sqlx::Error {
        let mut listener = match PgListener::connect_with(db).await {
            Ok(listener) => listener,
            Err(error) => return error,
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            return error;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Ok(site_id) = notification.payload().parse() {
                        self.wake(site_id);
                    }
                }
                // The listener reconnected by itself: what was notified meanwhile is lost,
                // so every waiting poll reads again.
                Ok(None) => self.wake_all(),
                Err(error) => return error,
            }
        }
    }
}
