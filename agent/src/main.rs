use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use myscanner_agent::Agent;
use myscanner_agent::config::DeviceConfig;
use myscanner_agent::simulate::MeasurementFactory;
use rand::Rng;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "myscanner-agent", version, about = "The scanner side of MyScanner Cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one device with its credentials; its measurements come from the simulated sensor.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Measurements per minute.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// Find the hosts on this machine's local subnets, as an internal scan does, and print
    /// them as JSON.
    ScanNetwork {
        /// Subnets with more addresses are skipped.
        #[arg(long, default_value_t = myscanner_agent::internal_scans::MAX_HOSTS)]
        max_hosts: u32,
        /// A network the scan may sweep (CIDR); repeat for more. Nothing else is touched.
        #[arg(long = "allow", required = true)]
        allowed: Vec<ipnet::Ipv4Net>,
    },
    /// Run a fleet of simulated scanners, one per device file in DIR.
    Simulate {
        #[arg(long)]
        devices_dir: PathBuf,
        /// How many of the devices to run (default: all).
        #[arg(long)]
        devices: Option<usize>,
        /// Measurements per minute per device.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Overrides every device file's api_url.
        #[arg(long)]
        api_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "giving up: this needs the device file or the credential put right"
            );
            ExitCode::from(myscanner_agent::GAVE_UP)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (configs, rate) = match cli.command {
        Command::ScanNetwork { max_hosts, allowed } => {
            let hosts = myscanner_agent::network_scan::discover(max_hosts, &allowed).await?;
            println!("{}", serde_json::to_string_pretty(&hosts)?);
            return Ok(());
        }
        Command::Run { config, rate } => (vec![DeviceConfig::load(&config)?], rate),
        Command::Simulate { devices_dir, devices, rate, api_url } => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&devices_dir)
                .with_context(|| format!("reading {}", devices_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            files.truncate(devices.unwrap_or(files.len()));
            anyhow::ensure!(!files.is_empty(), "no device files (*.toml) in {}", devices_dir.display());
            let mut configs = vec![];
            for file in files {
                let mut config = DeviceConfig::load(&file)?;
                if let Some(url) = &api_url {
                    config.api_url.clone_from(url);
                }
                configs.push(config);
            }
            (configs, rate)
        }
    };
    anyhow::ensure!(rate > 0.0, "--rate must be positive");

    // Each device reaches the cloud in its own time: one that cannot yet holds up no other.
    let shutdown = CancellationToken::new();
    let mut agents = tokio::task::JoinSet::new();
    for config in configs {
        let shutdown = shutdown.clone();
        let name = config.serial.clone().unwrap_or_else(|| config.api_url.clone());
        agents.spawn(async move {
            let agent = tokio::select! {
                agent = Agent::start(config) => agent.with_context(|| format!("device {name}"))?,
                () = shutdown.cancelled() => return Ok(()),
            };
            scan(agent, rate, shutdown).await
        });
    }
    // Agents run until asked to stop. One that ends before gave up on something retrying
    // cannot mend; the others go on (a fleet is not stopped by one broken device file).
    let mut gave_up = None;
    loop {
        tokio::select! {
            () = stop_requested() => break,
            Some(ended) = agents.join_next() => {
                if let Err(error) = ended? {
                    tracing::error!(error = format!("{error:#}"), "an agent gave up");
                    gave_up.get_or_insert(error);
                }
                if agents.is_empty() {
                    break;
                }
            }
        }
    }
    tracing::info!("stopping");
    shutdown.cancel();
    // Every agent is waited for (each saves its outbox's position) before any error is told.
    while let Some(ended) = agents.join_next().await {
        if let Err(error) = ended? {
            gave_up.get_or_insert(error);
        }
    }
    gave_up.map_or(Ok(()), Err)
}

/// SIGINT (Ctrl-C) or SIGTERM (what systemd sends on stop).
async fn stop_requested() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// The simulated sensor: a measurement now and then (exponential gaps, mean 60/rate s).
async fn scan(agent: Agent, per_minute: f64, shutdown: CancellationToken) -> anyhow::Result<()> {
    let identity = &agent.identity;
    let mut factory = MeasurementFactory::new(identity.device_id, identity.site_id, identity.kind == "mps");
    loop {
        let gap = -(1.0 - rand::rng().random::<f64>()).ln() * 60.0 / per_minute;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs_f64(gap)) => {}
        }
        let measurement = factory.next(chrono::Utc::now());
        if agent.record(&[measurement])? {
            tracing::debug!(pending = agent.pending(), "measurement recorded");
        }
    }
    agent.stop().await;
    Ok(())
}
