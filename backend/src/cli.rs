//! The `myscanner` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::{admin, db, http, startup, telemetry};

#[derive(Debug, Parser)]
#[command(name = "myscanner", version, about = "MyScanner Cloud: the backend LVS/MPS scanners report to")]
pub struct Cli {
    /// A TOML configuration file; `MYSCANNER_*` environment variables override it.
    #[arg(long, global = true, env = "MYSCANNER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database and serve the API until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (as committed in openapi/openapi.json).
    Openapi,
    /// Administration: bootstrap operators and demo data.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Forward a local port to a scanner's remote-control service (VNC), for native
    /// clients: each connection to LISTEN opens a remote session.
    Remote {
        /// MyScanner's address.
        #[arg(long, env = "MYSCANNER_API_URL", default_value = "http://127.0.0.1:8080")]
        api_url: String,
        #[arg(long)]
        workgroup: uuid::Uuid,
        #[arg(long)]
        device: uuid::Uuid,
        #[arg(long, default_value = "127.0.0.1:5901")]
        listen: std::net::SocketAddr,
        /// The CA MyScanner's certificate must be signed by (PEM); the platform's roots otherwise.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Accept a plain http:// API URL to another machine (your token and the session
        /// then cross the network unencrypted). Loopback URLs never need it.
        #[arg(long)]
        allow_insecure: bool,
        /// Your access token (from signing in); from the environment, never the command line.
        #[arg(long = "token-from-env", env = "MYSCANNER_TOKEN", hide_env_values = true, hide = true)]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a platform operator, or make an existing account one. The password comes
    /// from MYSCANNER_OPERATOR_PASSWORD; without it a random one is generated and printed.
    CreateOperator {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Platform operator")]
        name: String,
        /// If the e-mail already has an account that is not an operator's, promote it and
        /// reset its password (else that is refused: a customer's manager may have chosen it).
        #[arg(long)]
        promote_existing: bool,
    },
    /// Create (or refresh) a demo workgroup with a site, scanners and a workgroup admin.
    /// Device credentials are rotated and written to DIR, one TOML file per scanner.
    Demo {
        #[arg(long, default_value = ".local/devices")]
        devices_dir: PathBuf,
        /// MyScanner's address, written into the device files (the agent's default otherwise).
        #[arg(long)]
        api_url: Option<String>,
        /// The CA the demo scanners trust for https, wss and amqps, written into the device files.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The admin's password; random (and printed) when absent.
        #[arg(long, env = "MYSCANNER_DEMO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Show a workgroup's subscription, or create, change, renew or cancel it. Changes are
    /// kept in its history as the command line's.
    Subscription {
        #[arg(long)]
        workgroup: uuid::Uuid,
        #[command(subcommand)]
        change: Option<SubscriptionCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create or change it, its terms given whole (a cancelled one becomes active again).
    Set {
        #[arg(long)]
        plan: String,
        /// Scanners it covers.
        #[arg(long)]
        scanners: i32,
        /// The period's end (RFC 3339, e.g. 2027-12-31T00:00:00Z).
        #[arg(long)]
        until: chrono::DateTime<chrono::Utc>,
        /// The period's start; now by default.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        trial: bool,
        /// Days it keeps working after `until`; `subscriptions.grace_days` by default.
        #[arg(long)]
        grace_days: Option<i32>,
    },
    /// Renew to a new period end: a running period is extended, otherwise one starts now.
    Renew {
        #[arg(long)]
        until: chrono::DateTime<chrono::Utc>,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        scanners: Option<i32>,
    },
    /// Cancel it now: cloud features stop, data stays and ingest goes on.
    Cancel,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        use std::io::Write;
        // A closed pipe (`myscanner openapi | head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(http::openapi::spec_json().as_bytes());
        return Ok(());
    }
    if let Command::Remote { api_url, workgroup, device, listen, ca_file, allow_insecure, token } = cli.command {
        // A client command: no server configuration needed.
        tracing_subscriber::fmt().with_env_filter("info").init();
        let tls = myscanner_protocol::tls::client_config_from_file(ca_file.as_deref())?;
        let target = crate::remote::forward::Target { api_url, workgroup_id: workgroup, device_id: device, token, tls };
        return crate::remote::forward::run(listen, target, allow_insecure).await;
    }
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log);
    match cli.command {
        Command::Openapi | Command::Remote { .. } => unreachable!("handled above"),
        Command::Serve => {
            let application = startup::Application::build(config).await?;
            application.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate => {
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            tracing::info!("database is up to date");
            Ok(())
        }
        Command::Admin(command) => {
            let pool = db::connect(&config.database).await?;
            db::migrate(&pool).await?;
            match command {
                AdminCommand::CreateOperator { email, name, promote_existing } => {
                    let password = std::env::var("MYSCANNER_OPERATOR_PASSWORD").ok();
                    let existing = if promote_existing {
                        admin::Existing::PromoteAndResetPassword
                    } else {
                        admin::Existing::Refuse
                    };
                    admin::create_operator(&pool, &email, &name, password, existing).await
                }
                AdminCommand::Demo { devices_dir, api_url, ca_file, password } => {
                    let broker = crate::broker::management::Management::new(&config.broker)?;
                    let link = admin::DemoLink { api_url, ca_file };
                    admin::demo(&pool, &broker, &devices_dir, &link, password).await
                }
                AdminCommand::Subscription { workgroup, change } => {
                    admin::subscription(&pool, &config.subscriptions, workgroup, change.map(Into::into)).await
                }
            }
        }
    }
}

impl From<SubscriptionCommand> for crate::subscriptions::terms::Change {
    fn from(command: SubscriptionCommand) -> Self {
        use crate::http::fields::Name;
        use crate::subscriptions::terms::{Change, Renewal, SubscriptionFields};
        match command {
            SubscriptionCommand::Set { plan, scanners, until, from, trial, grace_days } => {
                Change::Set(SubscriptionFields {
                    plan: Name(plan),
                    scanners,
                    trial,
                    period_start: from,
                    period_end: until,
                    grace_days,
                })
            }
            SubscriptionCommand::Renew { until, plan, scanners } => {
                Change::Renew(Renewal { period_end: until, plan: plan.map(Name), scanners })
            }
            SubscriptionCommand::Cancel => Change::Cancel,
        }
    }
}
