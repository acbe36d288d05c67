//! Device credentials: issued at provisioning, rotated when a scanner is replaced or a
//! secret may have leaked, revoked to cut a device off at once. Stored only as SHA-256.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::secret::{self, DEVICE_PREFIX};
use crate::auth::{CurrentUser, Permission};
use crate::broker::management::Management;
use crate::http::{Error, Json, Path, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCredential {
    pub credential_id: Uuid,
    /// The device's bearer secret. Shown only in this response: install it on the scanner.
    pub secret: String,
}

/// Issues a new credential for the device, revoking any live one, in the caller's
/// transaction, and gives the device's broker user the new secret as its password. If the
/// broker cannot be told, the caller's transaction must not commit (the error says so).
pub async fn issue(
    tx: &mut sqlx::PgConnection,
    broker: &Management,
    workgroup_id: Uuid,
    device_id: Uuid,
) -> Result<IssuedCredential> {
    end_live_credential(&mut *tx, device_id).await?;
    let issued = secret::issue(DEVICE_PREFIX);
    sqlx::query!(
        "INSERT INTO device_credentials (id, workgroup_id, device_id, secret_hash) VALUES ($1, $2, $3, $4)",
        issued.id,
        workgroup_id,
        device_id,
        &issued.hash,
    )
    .execute(&mut *tx)
    .await?;
    broker.put_device_user(device_id, &issued.token).await.map_err(broker_unavailable)?;
    Ok(IssuedCredential { credential_id: issued.id, secret: issued.token })
}

/// Ends the device's live credential, if it has one.
async fn end_live_credential(tx: &mut sqlx::PgConnection, device_id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE device_credentials SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL",
        device_id
    )
    .execute(tx)
    .await?;
    Ok(())
}

fn broker_unavailable(error: anyhow::Error) -> Error {
    tracing::error!(error = %error, "broker management failed");
    Error::Unavailable("the message broker could not be updated; nothing was changed".into())
}

async fn exists(tx: &mut sqlx::PgConnection, workgroup_id: Uuid, device_id: Uuid) -> Result<()> {
    // Locks the device so that concurrent rotations serialise.
    sqlx::query!(
        "SELECT 1 AS found FROM devices WHERE workgroup_id = $1 AND id = $2 FOR UPDATE",
        workgroup_id,
        device_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .map(|_| ())
    .ok_or(Error::NotFound)
}

/// Refuses a scanner beyond those the workgroup's subscription covers: devices holding a live
/// credential count. Call in the transaction that issues the credential; it locks the
/// workgroup's row, so concurrent provisionings and rotations count one after another.
pub async fn within_covered_scanners(tx: &mut sqlx::PgConnection, workgroup_id: Uuid) -> Result<()> {
    // Locked first and counted after, in a statement of its own: a statement's snapshot is
    // taken when it starts, so a count in the locking statement would miss the credential
    // a concurrent provisioning committed while this one waited for the lock.
    crate::workgroups::api::lock(tx, workgroup_id).await?;
    let row = sqlx::query!(
        r#"SELECT coalesce((SELECT scanners FROM subscriptions WHERE workgroup_id = $1), 0) AS "covered!",
                  (SELECT count(*) FROM device_credentials WHERE workgroup_id = $1 AND revoked_at IS NULL) AS "in_use!""#,
        workgroup_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let (covered, in_use) = (row.covered, row.in_use);
    if in_use >= i64::from(covered) {
        return Err(Error::ScannerLimit { covered });
    }
    Ok(())
}

/// Rotate the device credential: the old one stops working, the new one is returned once.
/// A device without a live credential (revoked) counts against the subscription's scanners
/// again.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/devices/{device_id}/credentials/rotate", tag = "devices",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 201, body = IssuedCredential),
        (status = 402, description = "The device holds no live credential and the subscription covers no more \
            scanners (`scanner-limit-reached`)"),
        (status = 503, description = "The broker could not be updated; nothing changed")))]
pub async fn rotate(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, device_id)): Path<(Uuid, Uuid)>,
) -> Result<(StatusCode, Json<IssuedCredential>)> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let mut tx = state.db.begin().await?;
    exists(&mut tx, workgroup_id, device_id).await?;
    let live = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM device_credentials WHERE device_id = $1 AND revoked_at IS NULL) AS "live!""#,
        device_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if !live {
        within_covered_scanners(&mut tx, workgroup_id).await?;
    }
    let credential = issue(&mut tx, &state.broker, workgroup_id, device_id).await?;
    tx.commit().await?;
    // A tunnel opened with the old credential goes; the scanner reconnects with the new one.
    state.remote.cut_off(device_id).await?;
    tracing::info!(device.id = %device_id, "device credential rotated");
    Ok((StatusCode::CREATED, Json(credential)))
}

/// Revoke the device's credential: the device is cut off at once — HTTPS and AMQP, whose
/// open connections are closed — until a rotation issues a new one.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/devices/{device_id}/credentials/revoke", tag = "devices",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 204, description = "Revoked"),
        (status = 503, description = "The broker could not be updated; nothing changed")))]
pub async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, device_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let mut tx = state.db.begin().await?;
    exists(&mut tx, workgroup_id, device_id).await?;
    end_live_credential(&mut tx, device_id).await?;
    state.broker.delete_device_user(device_id).await.map_err(broker_unavailable)?;
    tx.commit().await?;
    // Its remote-control tunnel goes too, wherever it is held.
    state.remote.cut_off(device_id).await?;
    tracing::info!(device.id = %device_id, "device credential revoked");
    Ok(StatusCode::NO_CONTENT)
}
