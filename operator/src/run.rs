//! The operator process: the admin endpoint, leader election, and the controllers while this
//! replica leads.

use std::sync::Arc;

use kube_lease_manager::LeaseManagerBuilder;
use kubemail_runtime::admin_http::{AdminEndpoint, Readiness};
use kubemail_runtime::shutdown::Shutdown;

use crate::config::Config;
use crate::context::Context;
use crate::mailstore::Mailstores;
use crate::{Error, Result, controller};

/// Runs the operator until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<()> {
    let client = kube::Client::try_default().await?;
    let readiness = Readiness::new();
    let ready = readiness.component("kubernetes-api");
    let admin = AdminEndpoint::start(config.http_listen, readiness, shutdown.wait()).await.map_err(Error::Invalid)?;
    // The API server answered the client's configuration: ready to take the lease.
    client.apiserver_version().await?;
    ready.set_ready(true);

    let identity = config.identity.clone().unwrap_or_else(|| format!("operator-{}", std::process::id()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        Mailstores::new(config.mailstore.clone()),
        env!("CARGO_PKG_VERSION").to_string(),
        Some(identity.clone()),
    ));
    if config.leader_election {
        let namespace = config.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        lead(ctx, &config.lease_name, &namespace, &identity, shutdown).await?;
    } else {
        controller::run(ctx, shutdown).await;
    }
    admin.finish().await.map_err(Error::Invalid)
}

/// Runs the controllers while this replica holds the lease; stops them when it loses it.
async fn lead(ctx: Arc<Context>, lease: &str, namespace: &str, identity: &str, shutdown: Shutdown) -> Result<()> {
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .build()
        .await
        .map_err(|error| Error::Invalid(format!("leader election: {error}")))?;
    let (mut leading, lease_task) = manager.watch().await;
    let mut controllers: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if *leading.borrow_and_update() {
            if controllers.is_none() {
                tracing::info!(lease, identity, "leading: reconciling");
                controllers = Some(tokio::spawn(controller::run(ctx.clone(), shutdown.clone())));
            }
        } else if let Some(running) = controllers.take() {
            tracing::warn!(lease, identity, "lost the lease: stopped reconciling");
            running.abort();
        }
        tokio::select! {
            () = shutdown.wait() => break,
            changed = leading.changed() => if changed.is_err() { break },
        }
    }
    if let Some(running) = controllers.take() {
        let _ = running.await;
    }
    // Dropping the channel ends the lease task, which releases the lease for another replica.
    drop(leading);
    if let Ok(Ok(manager)) = lease_task.await {
        let _ = manager.release().await;
    }
    Ok(())
}
