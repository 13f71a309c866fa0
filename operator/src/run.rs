//! The operator process: the admin endpoint, leader election, and the controllers while this
//! replica leads.

use std::time::Duration;

use kube_lease_manager::LeaseManagerBuilder;
use kubemail_runtime::admin_http::AdminEndpoint;
use kubemail_runtime::identity::Role;
use kubemail_runtime::shutdown::Shutdown;

use crate::config::Config;
use crate::context::Settings;
use crate::mailstore::Mailstores;
use crate::{Error, Result, controller};

/// Runs the operator until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<()> {
    let client = kube::Client::try_default().await?;
    let (admin, ready) =
        AdminEndpoint::start("kubernetes-api", config.http_listen, shutdown.wait()).await.map_err(Error::Invalid)?;
    // The API server answered the client's configuration: ready to take the lease.
    client.apiserver_version().await?;
    ready.set_ready(true);

    let fixed_identity = match &config.mailstore {
        Some(_) => {
            config.service_identity.load(Role::Operator, &shutdown).map_err(|e| Error::Invalid(e.to_string()))?
        }
        None => None,
    };
    let identity = config.identity.clone().unwrap_or_else(|| format!("operator-{}", std::process::id()));
    let settings = Settings {
        client: client.clone(),
        mailstores: Mailstores::new(config.mailstore.clone(), fixed_identity),
        default_tag: env!("CARGO_PKG_VERSION").to_string(),
        instance: Some(identity.clone()),
        watch_namespace: None,
        usage_refresh: config.usage_refresh,
    };
    if config.leader_election {
        let namespace = config.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let lease = Lease { name: config.lease_name.clone(), namespace, identity, duration: LEASE_DURATION };
        let work = {
            let shutdown = shutdown.clone();
            let namespaces = config.watch_namespaces.clone();
            move || controller::run_in(settings.clone(), namespaces.clone(), shutdown.clone())
        };
        lead(client, &lease, shutdown, work).await?;
    } else {
        controller::run_in(settings, config.watch_namespaces.clone(), shutdown).await;
    }
    admin.finish().await.map_err(Error::Invalid)
}

/// How long a leader's lease lasts without renewal: how long the replicas go without a leader
/// when the leader dies without releasing it.
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// The Lease replicas compete for, and this replica's name in it.
pub struct Lease {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// Runs `work` while this replica holds `lease`, stopping it when the lease is lost, until
/// `shutdown`; then gives the lease up so another replica takes over at once.
pub async fn lead<F, W>(client: kube::Client, lease: &Lease, shutdown: Shutdown, work: W) -> Result<()>
where
    W: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let seconds = lease.duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(seconds)
        // Renewed well before it runs out.
        .with_grace(seconds / 3)
        .build()
        .await
        .map_err(|error| Error::Invalid(format!("leader election: {error}")))?;
    let (mut leading, lease_task) = manager.watch().await;
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if *leading.borrow_and_update() {
            if running.is_none() {
                tracing::info!(lease = lease.name, identity = lease.identity, "leading: reconciling");
                running = Some(tokio::spawn(work()));
            }
        } else if let Some(work) = running.take() {
            tracing::warn!(lease = lease.name, identity = lease.identity, "lost the lease: stopped reconciling");
            work.abort();
        }
        tokio::select! {
            () = shutdown.wait() => break,
            changed = leading.changed() => if changed.is_err() { break },
        }
    }
    if let Some(work) = running.take() {
        let _ = work.await;
    }
    // Closing the channel makes the lease task release the lease.
    drop(leading);
    let _ = lease_task.await;
    Ok(())
}
