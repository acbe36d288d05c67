use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    myscanner::cli::run(myscanner::cli::Cli::parse()).await
}
