use checkpoint_agent::config::Config;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_smithy_runtime=warn,aws_sdk_s3=warn")
    });
    tracing_subscriber::fmt().with_env_filter(filter).init();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), node = %config.node.node_name, dir = %config.upload.checkpoint_dir.display(), "checkpoint-agent starting");
    checkpoint_agent::run(config).await?;
    Ok(())
}
