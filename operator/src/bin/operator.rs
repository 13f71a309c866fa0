//! The operator binary (one Deployment installed by the Helm chart).

use clap::Parser;
use kubemail_operator::config::Config;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("operator")?;
    kubemail_operator::run::run(config, Shutdown::on_signal()?).await?;
    Ok(())
}
