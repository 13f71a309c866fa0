//! The standalone mailstore service (one Deployment in a MailCluster).

use clap::Parser;
use kubemail_mailstore::config::Config;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("mailstore")?;
    kubemail_mailstore::run(config, Shutdown::on_signal()?).await?;
    Ok(())
}
