//! Writing a batch of measurements: one transaction, one multi-row insert per table.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::validate::{Profile, Rejection, Row, printable};
use crate::devices::DeviceKind;

/// Serialises ingest transactions so that `measurements.seq` is assigned in commit order
/// (see migrations/0002). Held only for the insert of one batch.
const SEQ_LOCK: i64 = 0x6d79_7363_6e72_0001;

/// The kind of each of these devices that exists.
#[tracing::instrument(skip_all, fields(devices = ids.len()))]
pub async fn known_devices(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, DeviceKind>> {
    let rows = sqlx::query!(r#"SELECT id, kind AS "kind: DeviceKind" FROM devices WHERE id = ANY($1)"#, ids)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|device| (device.id, device.kind)).collect())
}

/// Whether the database refused the data itself (a data exception or a violated
/// constraint): retrying cannot help, unlike a lost connection.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")))
}

/// A rejected message as recorded for operators.
pub struct RejectedMessage<'a> {
    pub rejection: &'a Rejection,
    pub body: &'a [u8],
    pub routing_key: &'a str,
    pub broker_user: Option<&'a str>,
}

/// Stores new measurements (a measurement already stored is skipped: redelivery and
/// duplicates are harmless) and records rejections, all in one statement — one round trip
/// and one transaction. Returns how many measurements were new.
///
/// The statement itself keeps what foreign keys checked row by row (at a quarter of the
/// insert's cost; see migrations/0008): a measurement takes its workgroup and site from
/// its device's row, read by the statement, and a profile is written only for a
/// measurement the statement inserted. A device that is not there leaves the workgroup
/// NULL, which the database refuses: the message is then rejected, never lost.
#[tracing::instrument(skip_all, fields(rows = rows.len(), rejected = rejected.len()))]
pub async fn write(db: &PgPool, rows: &[Row], rejected: &[RejectedMessage<'_>]) -> sqlx::Result<u64> {
    // The same measurement twice in one batch would make the profile insert collide.
    let mut seen = HashSet::new();
    let rows: Vec<&Row> = rows.iter().filter(|r| seen.insert((r.device_id, r.measurement_id))).collect();
    if rows.is_empty() && rejected.is_empty() {
        return Ok(0);
    }
    let profiles: Vec<(&Row, &Profile)> = rows.iter().filter_map(|r| Some((*r, r.profile.as_ref()?))).collect();
    const EXCERPT: usize = 4096;
    // `seq` must be taken in commit order (see migrations/0002), so the statement first
    // takes the transaction-scoped lock that serialises ingest: `nextval` depends on the
    // `locked` row, so it cannot run before the lock is held, which lasts until commit.
    // Arrays go by reference; those of `Option`s or of borrowed values `as _`, as the
    // macro's check knows only arrays of owned values (the statement's casts fix their types).
    let count = sqlx::query_scalar!(
        r#"WITH locked AS MATERIALIZED (
            SELECT true AS held FROM (SELECT pg_advisory_xact_lock($1)) AS l
         ), inserted AS (
            INSERT INTO measurements (device_id, measurement_id, workgroup_id, site_id, seq, scanned_at, received_at,
                truck_id, truck_name, reference_scan_id, volume_m3, payload_t, carry_back_m3, load_details,
                quality_flags, has_profile)
            SELECT t.device_id, t.measurement_id, d.workgroup_id, d.site_id,
                CASE WHEN locked.held THEN nextval('measurements_seq') END, t.scanned_at,
                clock_timestamp(), t.truck_id, t.truck_name, t.reference_scan_id, t.volume_m3, t.payload_t,
                t.carry_back_m3, t.load_details, ARRAY(SELECT jsonb_array_elements_text(t.quality_flags)), t.has_profile
            FROM locked, UNNEST($2::uuid[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::uuid[],
                                $8::float8[], $9::float8[], $10::float8[], $11::jsonb[], $12::jsonb[], $13::bool[])
                AS t(device_id, measurement_id, scanned_at, truck_id, truck_name, reference_scan_id, volume_m3,
                     payload_t, carry_back_m3, load_details, quality_flags, has_profile)
            LEFT JOIN devices d ON d.id = t.device_id
            ON CONFLICT (device_id, measurement_id) DO NOTHING
            RETURNING device_id, measurement_id, workgroup_id
         ), profiles AS (
            INSERT INTO load_profiles (device_id, measurement_id, workgroup_id, rows, cols, cell_size_mm, heights)
            SELECT p.device_id, p.measurement_id, i.workgroup_id, p.rows, p.cols, p.cell_size_mm, p.heights
            FROM UNNEST($14::uuid[], $15::uuid[], $16::int2[], $17::int2[], $18::int4[], $19::bytea[])
                AS p(device_id, measurement_id, rows, cols, cell_size_mm, heights)
            JOIN inserted i USING (device_id, measurement_id)
         ), rejected AS (
            INSERT INTO ingest_rejections (id, payload_sha256, reason, routing_key, broker_user, claimed_device_id,
                                           payload_size, payload_excerpt)
            SELECT * FROM UNNEST($20::uuid[], $21::bytea[], $22::text[], $23::text[], $24::text[], $25::uuid[],
                                 $26::int4[], $27::bytea[])
            ON CONFLICT ON CONSTRAINT ingest_rejections_payload_key DO NOTHING
         )
         SELECT count(*) AS "count!" FROM inserted"#,
        SEQ_LOCK,
        &rows.iter().map(|r| r.device_id).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.measurement_id).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.scanned_at).collect::<Vec<_>>(),
        rows.iter().map(|r| r.truck_id.as_str()).collect::<Vec<_>>() as _,
        rows.iter().map(|r| r.truck_name.as_deref()).collect::<Vec<_>>() as _,
        rows.iter().map(|r| r.reference_scan_id).collect::<Vec<_>>() as _,
        &rows.iter().map(|r| r.volume_m3).collect::<Vec<_>>(),
        rows.iter().map(|r| r.payload_t).collect::<Vec<_>>() as _,
        rows.iter().map(|r| r.carry_back_m3).collect::<Vec<_>>() as _,
        rows.iter().map(|r| &r.load_details).collect::<Vec<_>>() as _,
        &rows.iter().map(|r| serde_json::json!(r.quality_flags)).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.profile.is_some()).collect::<Vec<_>>(),
        &profiles.iter().map(|(r, _)| r.device_id).collect::<Vec<_>>(),
        &profiles.iter().map(|(r, _)| r.measurement_id).collect::<Vec<_>>(),
        &profiles.iter().map(|(_, p)| p.rows).collect::<Vec<_>>(),
        &profiles.iter().map(|(_, p)| p.cols).collect::<Vec<_>>(),
        &profiles.iter().map(|(_, p)| p.cell_size_mm).collect::<Vec<_>>(),
        profiles.iter().map(|(_, p)| p.heights.as_slice()).collect::<Vec<_>>() as _,
        &rejected.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>(),
        &rejected.iter().map(|r| Sha256::digest(r.body).to_vec()).collect::<Vec<_>>(),
        rejected.iter().map(|r| r.rejection.reason.as_str()).collect::<Vec<_>>() as _,
        // Quoted from the message's envelope: made printable like the reasons, or a stray
        // control character would have the database refuse the record of a rejection.
        &rejected.iter().map(|r| printable(r.routing_key)).collect::<Vec<_>>(),
        rejected.iter().map(|r| r.broker_user.map(printable)).collect::<Vec<_>>() as _,
        rejected.iter().map(|r| r.rejection.claimed_device_id).collect::<Vec<_>>() as _,
        &rejected.iter().map(|r| r.body.len() as i32).collect::<Vec<_>>(),
        rejected.iter().map(|r| &r.body[..r.body.len().min(EXCERPT)]).collect::<Vec<_>>() as _,
    )
    .fetch_one(db)
    .await?;
    Ok(count as u64)
}
