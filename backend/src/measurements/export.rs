//! Exports of any size as NDJSON or CSV, streamed: rows go from a database cursor through a
//! small bounded channel into the response body, so memory stays flat whatever the range.
//! gzip is applied by the compression layer when the client accepts it.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::api::{COLUMNS, Measurement, MeasurementRow, push_page};
use super::filter::{MeasurementFilter, Order};
use crate::auth::{Caller, Permission};
use crate::http::{Error, Path, Query, Result};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON measurement per line (`application/x-ndjson`), as in the listing.
    #[default]
    Ndjson,
    /// A header line and one row per measurement (`text/csv`).
    Csv,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (default) or `csv`.
    pub format: Option<Format>,
    /// `asc` (oldest first, the default for exports) or `desc`.
    pub order: Option<Order>,
}

/// Bytes buffered before a chunk is handed to the body.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the database reader and the client: the memory bound.
const CHUNKS_IN_FLIGHT: usize = 4;

const CSV_HEADER: &str = "device_id,measurement_id,site_id,seq,scanned_at,received_at,truck_id,truck_name,\
reference_scan_id,volume_m3,payload_t,carry_back_m3,load_details,quality_flags,has_profile\n";

/// Export measurements matching the filter, streamed.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/measurements/export", tag = "measurements",
    params(("workgroup_id" = Uuid, Path), MeasurementFilter, ExportParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, description = "The measurements, streamed", content(
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    ))))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<MeasurementFilter>,
    Query(params): Query<ExportParams>,
) -> Result<Response> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ViewData)?;
    let conditions = filter.conditions(workgroup_id)?;
    let format = params.format.unwrap_or_default();
    let order = params.order.unwrap_or(Order::Asc);
    // A bounded number of exports at once: each holds a database connection for as long as
    // it streams.
    let permit = state.exports.clone().try_acquire_owned().map_err(|_| Error::TooManyRequests { retry_after: 10 })?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Chunk>>(CHUNKS_IN_FLIGHT);
    let (started, first) = tokio::sync::oneshot::channel::<Result<(), sqlx::Error>>();
    let db = state.db.clone();
    let stalled_after = std::time::Duration::from_secs(state.config.server.stalled_stream_secs);
    tokio::spawn(async move {
        let _permit = permit;
        let mut sql = QueryBuilder::new(format!("SELECT {COLUMNS} FROM measurements"));
        conditions.push_where(&mut sql);
        push_page(&mut sql, order, None, i64::MAX);
        let mut rows = sql.build_query_as::<MeasurementRow>().fetch(&db).peekable();
        // The query has answered (a first row, the end, or an error) before the status line
        // goes out: an export that cannot start is an error response, not a broken body.
        match std::pin::Pin::new(&mut rows).peek().await {
            Some(Err(_)) => {
                let Some(Err(error)) = rows.next().await else { unreachable!("peeked") };
                let _ = started.send(Err(error));
                return;
            }
            _ => {
                if started.send(Ok(())).is_err() {
                    return;
                }
            }
        }
        let mut buffer = Vec::with_capacity(CHUNK + 4096);
        if let Format::Csv = format {
            buffer.extend_from_slice(CSV_HEADER.as_bytes());
        }
        while let Some(row) = rows.next().await {
            match row {
                Ok(row) => write_row(&mut buffer, format, Measurement::from(row)),
                Err(error) => {
                    // The status line is gone already: end the body with an error so the
                    // client sees a broken transfer, never a silently short file.
                    tracing::error!(error = %error, "export failed mid-stream");
                    let _ = sender.send(Err(std::io::Error::other("export failed"))).await;
                    return;
                }
            }
            if buffer.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK + 4096)));
                if !deliver(&sender, chunk, stalled_after).await {
                    return; // gone or stalled: dropping the cursor ends the query, frees the connection
                }
            }
        }
        let delivered = buffer.is_empty() || deliver(&sender, Bytes::from(buffer), stalled_after).await;
        if delivered {
            let _ = sender.send(Ok(Chunk::End)).await; // a client gone by now needs no end mark
        }
    });
    first.await.map_err(|_| Error::Internal(anyhow::anyhow!("the export task ended before it started")))??;
    // The body ends well only after the last row: a producer that gave up (a stalled
    // client, a failed query) ends it with an error, so that it is never a short file that
    // looks whole. Fused: the compression layer may poll once more after the end.
    let body = Body::from_stream(
        futures_util::stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(Ok(Chunk::Rows(bytes))) => Some((Ok(bytes), Some(receiver))),
                Some(Ok(Chunk::End)) => None,
                Some(Err(error)) => Some((Err(error), None)),
                None => Some((Err(std::io::Error::other("export given up")), None)),
            }
        })
        .fuse(),
    );
    let (content_type, extension) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!("attachment; filename=\"measurements.{extension}\"");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII")),
        ],
        body,
    )
        .into_response())
}

/// What the export task hands the body: rows, then the mark that they are all there.
enum Chunk {
    Rows(Bytes),
    End,
}

/// Hands a chunk to the body; `false` when the client went away or stopped reading for
/// `stalled_after` (a reader that stops reading must not keep a database connection for ever).
async fn deliver(
    sender: &tokio::sync::mpsc::Sender<std::io::Result<Chunk>>,
    chunk: Bytes,
    stalled_after: std::time::Duration,
) -> bool {
    match tokio::time::timeout(stalled_after, sender.send(Ok(Chunk::Rows(chunk)))).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            tracing::warn!("export given up: the client stopped reading");
            false
        }
    }
}

fn write_row(out: &mut Vec<u8>, format: Format, m: Measurement) {
    match format {
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, &m).expect("measurements serialise");
            out.push(b'\n');
        }
        Format::Csv => {
            use std::fmt::Write as _;
            let mut line = String::with_capacity(256);
            let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            let details: Vec<String> = m.load_details.iter().map(|d| format!("{}:{}", d.list, d.code)).collect();
            let _ = write!(
                line,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                m.device_id,
                m.measurement_id,
                m.site_id,
                m.seq,
                m.scanned_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                m.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                csv_field(&m.truck.truck_id),
                csv_field(m.truck.name.as_deref().unwrap_or("")),
                m.truck.reference_scan_id.map(|id| id.to_string()).unwrap_or_default(),
                m.volume_m3,
                opt(m.payload_t),
                opt(m.carry_back_m3),
                csv_field(&details.join(";")),
                csv_field(&m.quality_flags.join(";")),
                m.has_profile,
            );
            line.push('\n');
            out.extend_from_slice(line.as_bytes());
        }
    }
}

/// RFC 4180 quoting where needed; a leading `=`, `+`, `-`, `@`, tab or carriage return is
/// prefixed with `'` so that spreadsheets do not run it as a formula (OWASP's CSV injection
/// rule).
pub fn csv_field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(super::csv_field("CAT 777G"), "CAT 777G");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(super::csv_field("\t=1+1"), "'\t=1+1");
        assert_eq!(super::csv_field("\r=1+1"), "\"'\r=1+1\"");
    }
}
