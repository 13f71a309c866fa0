//! The standalone smtp-ingress service (one Deployment in a MailCluster).

use clap::Parser;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;
use kubemail_smtp_ingress::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("smtp-ingress")?;
    kubemail_smtp_ingress::run(config, Shutdown::on_signal()?).await?;
    Ok(())
}
