use clap::Parser;
use transition_operator::{config::Config, observe::telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let client = transition_operator::client(&config).await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), namespace = ?config.namespace, "transition-operator starting");
    transition_operator::run(config, client).await?;
    Ok(())
}
