//! The standalone imap-frontend service (one Deployment in a MailCluster, scaled out).

use clap::Parser;
use kubemail_imap_frontend::config::Config;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("imap-frontend")?;
    kubemail_imap_frontend::run(config, Shutdown::on_signal()?).await?;
    Ok(())
}
