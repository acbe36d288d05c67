//! Bootstrap commands: the first platform operator, and a demo workgroup to look at.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::password;
use crate::broker::management::Management;
use crate::config::SubscriptionsConfig;
use crate::devices::credentials;
use crate::http::fields::Name;
use crate::subscriptions::{
    self,
    terms::{self, Actor, Change, SubscriptionFields},
};

fn random_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What to do when the e-mail of a new operator already has an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse: the account may be a customer's, with a password a workgroup manager chose
    /// when they created it; promoting it as it stands would hand them the platform.
    Refuse,
    /// Promote it, and reset its password first (to the one given, or a generated one),
    /// ending every session it had.
    PromoteAndResetPassword,
}

/// Makes `email` a platform operator, creating the account (with `password`, or a
/// generated one that is printed) if it has none. Running it again for an operator sets the
/// given password, if any. An existing account that is not an operator is refused unless
/// `existing` says to promote it, which resets its password.
pub async fn create_operator(
    db: &PgPool,
    email: &str,
    name: &str,
    password: Option<String>,
    existing: Existing,
) -> anyhow::Result<()> {
    let is_operator = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM platform_operators o WHERE o.user_id = u.id) AS "is_operator!"
           FROM users u WHERE lower(email) = lower($1)"#,
        email,
    )
    .fetch_optional(db)
    .await?;
    let password = match is_operator {
        Some(false) if existing == Existing::Refuse => anyhow::bail!(
            "{email} already has an account, which is not an operator's; to promote it (its password is \
             reset), run again with --promote-existing"
        ),
        Some(false) => Some(password.unwrap_or_else(|| generated(email))),
        _ => password,
    };
    let user_id = ensure_user(db, email, name, password).await?;
    sqlx::query!("INSERT INTO platform_operators (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id)
        .execute(db)
        .await?;
    println!("platform operator: {email}");
    Ok(())
}

/// A new random password for `email`, printed: the only time it is shown.
fn generated(email: &str) -> String {
    let password = random_password();
    println!("generated password for {email}: {password}");
    password
}

/// Returns the account's id, creating it or setting its password as needed (a new
/// password ends the account's earlier sessions).
async fn ensure_user(db: &PgPool, email: &str, name: &str, password: Option<String>) -> anyhow::Result<Uuid> {
    anyhow::ensure!(crate::workgroups::members::valid_email(email), "not an e-mail address: {email}");
    let existing =
        sqlx::query_scalar!("SELECT id FROM users WHERE lower(email) = lower($1)", email).fetch_optional(db).await?;
    let password = match (password, existing) {
        (None, None) => Some(generated(email)),
        (password, _) => password,
    };
    if let Some(password) = &password {
        anyhow::ensure!(password.chars().count() >= password::MIN_LENGTH, "passwords need at least 12 characters");
    }
    let hash = match password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let id = match existing {
        Some(id) => {
            sqlx::query!(
                "UPDATE users SET password_hash = coalesce($2, password_hash),
                     session_epoch = session_epoch + CASE WHEN $2::text IS NULL THEN 0 ELSE 1 END
                 WHERE id = $1",
                id,
                hash,
            )
            .execute(db)
            .await?;
            id
        }
        None => {
            let id = Uuid::now_v7();
            sqlx::query!(
                "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)",
                id,
                email,
                name,
                hash,
            )
            .execute(db)
            .await?;
            id
        }
    };
    Ok(id)
}

const DEMO_WORKGROUP: &str = "Demo Quarries";
const DEMO_SITE: &str = "North Pit";
const DEMO_ADMIN: &str = "admin@demo.myscanner.local";
const DEMO_DEVICES: [(&str, &str, &str); 3] = [
    ("DEMO-LVS-0001", "lvs", "Weighbridge 1"),
    ("DEMO-LVS-0002", "lvs", "Weighbridge 2"),
    ("DEMO-MPS-0001", "mps", "Pit exit"),
];

/// A demo workgroup with one site, three scanners and an admin holding every permission.
/// Running it again reuses what exists and rotates the scanners' credentials.
/// Where the demo scanners find MyScanner: written into their device files.
pub struct DemoLink {
    pub api_url: Option<String>,
    /// The CA the scanners pin (for the service's and the broker's certificates).
    pub ca_file: Option<std::path::PathBuf>,
}

pub async fn demo(
    db: &PgPool,
    broker: &Management,
    devices_dir: &Path,
    link: &DemoLink,
    password: Option<String>,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    // The demo's workgroup is the one its scanners are in, whatever it has been renamed to
    // since; then one of the demo's name; else a new one.
    let serials: Vec<&str> = DEMO_DEVICES.iter().map(|(serial, _, _)| *serial).collect();
    let workgroup_id = match sqlx::query_scalar!(
        r#"SELECT workgroup_id AS "workgroup_id!" FROM (
             (SELECT workgroup_id, 0 AS rank FROM devices WHERE serial = ANY($1) ORDER BY serial LIMIT 1)
             UNION ALL
             (SELECT id, 1 FROM workgroups WHERE name = $2 ORDER BY id LIMIT 1)
         ) found ORDER BY rank LIMIT 1"#,
        &serials as &[&str],
        DEMO_WORKGROUP,
    )
    .fetch_optional(&mut *tx)
    .await?
    {
        Some(id) => id,
        None => {
            sqlx::query_scalar!(
                "INSERT INTO workgroups (id, name) VALUES ($1, $2) RETURNING id",
                Uuid::now_v7(),
                DEMO_WORKGROUP
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let site_id = sqlx::query_scalar!(
        "INSERT INTO sites (id, workgroup_id, name, time_zone) VALUES ($1, $2, $3, 'Australia/Perth')
         ON CONFLICT ON CONSTRAINT sites_name_key DO UPDATE SET name = EXCLUDED.name RETURNING id",
        Uuid::now_v7(),
        workgroup_id,
        DEMO_SITE,
    )
    .fetch_one(&mut *tx)
    .await?;
    std::fs::create_dir_all(devices_dir).with_context(|| format!("creating {}", devices_dir.display()))?;
    for (serial, kind, name) in DEMO_DEVICES {
        let device_id = sqlx::query_scalar!(
            "INSERT INTO devices (id, workgroup_id, site_id, kind, serial, name) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT ON CONSTRAINT devices_serial_key DO UPDATE SET name = devices.name RETURNING id",
            Uuid::now_v7(),
            workgroup_id,
            site_id,
            kind,
            serial,
            name,
        )
        .fetch_one(&mut *tx)
        .await?;
        let credential =
            credentials::issue(&mut tx, broker, workgroup_id, device_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let file = devices_dir.join(format!("{serial}.toml"));
        let mut contents = format!(
            "# Device credential of demo scanner {serial} ({name})\nserial = \"{serial}\"\ndevice_id = \"{device_id}\"\n\
             credential = \"{}\"\n",
            credential.secret
        );
        if let Some(api_url) = &link.api_url {
            contents.push_str(&format!("api_url = {}\n", toml_string(api_url)));
        }
        if let Some(ca_file) = &link.ca_file {
            let ca_file = std::path::absolute(ca_file)?;
            contents.push_str(&format!("ca_file = {}\n", toml_string(&ca_file.to_string_lossy())));
        }
        contents.push_str(
            "# Every MyScanner feature on, as the scanner's owner would set it.\n[settings]\nmeasurement_transfer = true\n\
             allow_remote_control = true\nreference_scan_sync = true\nload_list_sync = true\n",
        );
        write_private(&file, &contents)?;
    }
    tx.commit().await?;
    let admin = ensure_user(db, DEMO_ADMIN, "Demo admin", password).await?;
    sqlx::query!(
        "INSERT INTO memberships (workgroup_id, user_id, permissions) VALUES ($1, $2, $3)
         ON CONFLICT (workgroup_id, user_id) DO UPDATE SET permissions = EXCLUDED.permissions",
        workgroup_id,
        admin,
        &["control_devices", "manage_workgroup", "view_data"] as &[&str],
    )
    .execute(db)
    .await?;
    // Its cloud features work: a year's subscription, unless it has one that runs.
    let now = chrono::Utc::now();
    let running =
        subscriptions::fetch(db, workgroup_id, now).await?.is_some_and(|row| row.at(now, "").features_available);
    if !running {
        let demo = Change::Set(SubscriptionFields {
            plan: Name("Demo".into()),
            scanners: 10,
            trial: false,
            period_start: None,
            period_end: now + chrono::Duration::days(365),
            grace_days: None,
        });
        terms::apply(db, workgroup_id, demo, &Actor::command_line(), now, 14).await.map_err(described)?;
    }
    println!(
        "demo workgroup \"{DEMO_WORKGROUP}\" ({workgroup_id}): admin {DEMO_ADMIN}, device credentials in {}",
        devices_dir.display()
    );
    Ok(())
}

/// A TOML string, escaped as TOML escapes it.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// Credentials are written readable by their owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Shows the workgroup's subscription after applying `change`, if any, as the command line.
pub async fn subscription(
    db: &PgPool,
    config: &SubscriptionsConfig,
    workgroup_id: Uuid,
    change: Option<Change>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    if let Some(change) = change {
        let action = terms::apply(db, workgroup_id, change, &Actor::command_line(), now, config.grace_days)
            .await
            .map_err(described)?;
        // Sessions of a workgroup that lost its features end at the serving replica's next heartbeat.
        println!("{}", action.map_or("unchanged (already cancelled)".to_owned(), |a| format!("{a:?}").to_lowercase()));
    }
    let row = subscriptions::fetch(db, workgroup_id, now).await?.context("no such workgroup")?;
    println!("{}", serde_json::to_string_pretty(&row.at(now, &config.contact))?);
    Ok(())
}

/// An API error as the command line reads it: every invalid field named.
fn described(error: crate::http::Error) -> anyhow::Error {
    match error {
        crate::http::Error::Validation(errors) => anyhow::anyhow!(
            "{}",
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}
