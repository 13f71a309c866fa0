//! The standalone delivery-queue service (one Deployment in a MailCluster).

use clap::Parser;
use kubemail_delivery_queue::config::Config;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("delivery-queue")?;
    kubemail_delivery_queue::run(config, Shutdown::on_signal()?).await?;
    Ok(())
}
