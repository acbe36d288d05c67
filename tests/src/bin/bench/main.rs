//! The benchmark harness: each capability against the real services, next to a baseline
//! measured in the same run. A module per benchmark; `fleet` is what they share (the
//! service in a process of its own, a provisioned workgroup, agents, seeded measurements).
//!
//!   deploy/scripts/bench.sh ingest [--devices 20] [--measurements 50000]
//!   deploy/scripts/bench.sh api [--measurements 1000000]
//!   deploy/scripts/bench.sh security [--devices 100000] [--workers 8]
//!   deploy/scripts/bench.sh tunnel [--agents 1000] [--mib 512]
//!   deploy/scripts/bench.sh sync [--scanners 50] [--changes 20] [--reference-scans 10000]
//!   deploy/scripts/bench.sh web [--loads 20]

use clap::{Parser, Subcommand};

mod api;
mod fleet;
mod ingest;
mod security;
mod sync;
mod tunnel;
mod web;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Measurement ingest: agents → RabbitMQ → consumer → PostgreSQL.
    Ingest {
        #[arg(long, default_value_t = 20)]
        devices: usize,
        #[arg(long, default_value_t = 50_000)]
        measurements: usize,
        /// Rounds of the three runs (PostgreSQL alone, the broker alone, end to end),
        /// interleaved so that drift on the machine weighs on all three alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Security Services: weekly fan-out, queue throughput, rescue latency, a full port scan.
    Security {
        #[arg(long, default_value_t = 100_000)]
        devices: i64,
        /// Scan slots of the worker pool.
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// The measurements API on a large table: first and deep pages, exports.
    Api {
        #[arg(long, default_value_t = 1_000_000)]
        measurements: i64,
    },
    /// Sync: propagation of a list change to every scanner of a site, and a new scanner's
    /// restore of a large set of reference scans.
    Sync {
        #[arg(long, default_value_t = 50)]
        scanners: usize,
        #[arg(long, default_value_t = 20)]
        changes: usize,
        #[arg(long, default_value_t = 10_000)]
        reference_scans: i64,
    },
    /// Remote control: one session's bulk throughput and added round trip next to direct
    /// TCP, and the service's memory per idle connected scanner.
    Tunnel {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Bytes sent (and echoed back) through one session, in MiB.
        #[arg(long, default_value_t = 512)]
        mib: usize,
    },
    /// The web dashboard: its first page's JavaScript and CSS, the time to a rendered
    /// measurements table next to the API call it makes, a 512 × 512 profile in 3D.
    Web {
        #[arg(long, default_value_t = 20)]
        loads: usize,
    },
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Bench::Ingest { devices, measurements, rounds } => ingest::run(devices, measurements, rounds).await,
        Bench::Api { measurements } => api::run(measurements).await,
        Bench::Security { devices, workers } => security::run(devices, workers).await,
        Bench::Tunnel { agents, mib } => tunnel::run(agents, mib).await,
        Bench::Sync { scanners, changes, reference_scans } => sync::run(scanners, changes, reference_scans).await,
        Bench::Web { loads } => web::run(loads).await,
    }
}
