//! Connections to the mailstore, and the benchmark's domain and accounts (through Admin).

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{GetAccountRequest, UpsertAccountRequest, UpsertDomainRequest};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message the client decodes: a SELECT snapshot grows with the mailbox (the
/// mailstore allows 64 MiB), beyond tonic's 4 MiB default for very large mailboxes.
const MAX_GRPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Password of every benchmark account (only needed because a new account must have one).
const PASSWORD: &str = "bench-password";

/// A new HTTP/2 connection to `url`. Each benchmark worker opens its own, so the load reaches
/// the server over several TCP connections as it does from several delivery-queue replicas.
pub async fn connect(url: &str) -> Result<Channel> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| anyhow!("invalid mailstore address {url:?}: {e}"))?;
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach the mailstore at {url}"))
}

pub fn mailstore(channel: Channel) -> MailStoreClient<Channel> {
    MailStoreClient::new(channel).max_decoding_message_size(MAX_GRPC_MESSAGE)
}

/// An account made for the benchmark.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub address: String,
}

/// Creates (or keeps), through the Admin API at `channel`, `domain` and the accounts `{prefix}1@domain` … `{prefix}{count}@domain`,
/// all with unlimited quota so the benchmark measures storing, not quota refusals.
pub async fn accounts(channel: Channel, domain: &str, prefix: &str, count: usize) -> Result<Vec<Account>> {
    let mut admin = AdminClient::new(channel);
    admin
        .upsert_domain(UpsertDomainRequest { name: domain.to_string(), ..Default::default() })
        .await
        .with_context(|| format!("creating domain {domain}"))?;
    let mut accounts = Vec::with_capacity(count);
    for n in 1..=count {
        let address = format!("{prefix}{n}@{domain}");
        // Existing accounts keep their password: hashing one costs the server tens of ms.
        let exists = match admin.get_account(GetAccountRequest { address: address.clone() }).await {
            Ok(_) => true,
            Err(status) if status.code() == Code::NotFound => false,
            Err(status) => return Err(status).with_context(|| format!("looking up account {address}")),
        };
        let account = admin
            .upsert_account(UpsertAccountRequest {
                address: address.clone(),
                password: if exists { String::new() } else { PASSWORD.to_string() },
                quota_storage: Some(0),
                quota_messages: Some(0),
                suspended: Some(false),
            })
            .await
            .with_context(|| format!("creating account {address}"))?
            .into_inner();
        accounts.push(Account { id: account.id, address });
    }
    Ok(accounts)
}
