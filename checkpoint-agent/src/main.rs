use checkpoint_agent::config::Config;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::info!(node = %config.node_name, url = %config.controller_url, "checkpoint-agent starting");
    let delivered = checkpoint_agent::heartbeat::run(&config).await?;
    tracing::info!(delivered, "checkpoint-agent stopped");
    Ok(())
}
