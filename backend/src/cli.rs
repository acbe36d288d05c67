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
    },
    /// Create (or refresh) a demo workgroup with a site, scanners and a workgroup admin.
    /// Device credentials are rotated and written to DIR, one TOML file per scanner.
    Demo {
        #[arg(long, default_value = ".local/devices")]
        devices_dir: PathBuf,
        /// The admin's password; random (and printed) when absent.
        #[arg(long, env = "MYSCANNER_DEMO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        use std::io::Write;
        // A closed pipe (`myscanner openapi | head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(http::openapi::spec_json().as_bytes());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log);
    match cli.command {
        Command::Openapi => unreachable!("handled above"),
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
                AdminCommand::CreateOperator { email, name } => {
                    let password = std::env::var("MYSCANNER_OPERATOR_PASSWORD").ok();
                    admin::create_operator(&pool, &email, &name, password).await
                }
                AdminCommand::Demo { devices_dir, password } => {
                    let broker = crate::broker::management::Management::new(&config.broker)?;
                    admin::demo(&pool, &broker, &devices_dir, password).await
                }
            }
        }
    }
}
