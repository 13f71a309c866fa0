//! The Mailbox reconciler, in four stages:
//!
//! - validate: its MailDomain and password Secret exist;
//! - build: the account as the spec wants it (quota, suspension);
//! - apply: the account in the mailstore, with its password and aliases;
//! - status: usage against quota.
//!
//! Deleting a Mailbox follows its `deletionPolicy`: `Retain` suspends the account and keeps its
//! mail, `Delete` removes both.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, Resource};
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{
    Account, AddAliasRequest, DeleteAccountRequest, GetAccountRequest, RemoveAliasRequest, UpsertAccountRequest,
};
use tonic::transport::Channel;

use super::domain::quota_limits;
use crate::context::Context;
use crate::crd::common::SecretKeyRef;
use crate::crd::common::condition::READY;
use crate::crd::mailbox::{Amounts, DeletionPolicy, MailboxStatus};
use crate::crd::{MailDomain, Mailbox};
use crate::mailstore::{Admin, unavailable};
use crate::quantity::format_bytes;
use crate::status::{self, Found};
use crate::{Error, Result};

/// How soon a Mailbox waiting for the mailstore is tried again.
const WAIT: Duration = Duration::from_secs(30);

pub async fn reconcile(mailbox: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    super::with_finalizer(mailbox, &ctx, reconcile_mailbox, remove_mailbox).await
}

/// The domain part of an address.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// Why a Mailbox is not ready, and when to look at it again.
struct NotReady {
    ready: Found,
    next: Action,
}

/// The reconcile of a Mailbox that is not being deleted.
async fn reconcile_mailbox(mailbox: &Mailbox, namespace: &str, ctx: &Context) -> Result<Action> {
    let (domain, secret_version) = match validate(mailbox, namespace, ctx).await {
        Ok(valid) => valid,
        Err(not_ready) => return report_not_ready(mailbox, namespace, ctx, not_ready).await,
    };
    let desired = build(mailbox, &domain);
    let account = match apply(mailbox, namespace, ctx, &domain, &desired, &secret_version).await? {
        Ok(account) => account,
        Err(not_ready) => return report_not_ready(mailbox, namespace, ctx, not_ready).await,
    };
    report_status(mailbox, namespace, ctx, &desired, &account, secret_version).await
}

/// The Mailbox's MailDomain and the version of its password Secret, from the caches.
async fn validate(
    mailbox: &Mailbox,
    namespace: &str,
    ctx: &Context,
) -> std::result::Result<(Arc<MailDomain>, String), NotReady> {
    let not_ready =
        |reason, message| NotReady { ready: Found::no(READY, reason, message), next: Action::await_change() };
    let address = &mailbox.spec.address;
    let Some(domain) = ctx.caches.domain_of_address(namespace, address).await else {
        let message = format!("no MailDomain for {} in namespace {namespace}", domain_of(address));
        return Err(not_ready("DomainNotFound", message));
    };
    let reference = &mailbox.spec.password_secret_ref;
    let Some(secret_version) = ctx.caches.secret_version(namespace, &reference.name).await else {
        return Err(not_ready("PasswordSecretNotFound", format!("Secret {} does not exist", reference.name)));
    };
    Ok((domain, secret_version))
}

/// The account as the spec wants it, its quota falling back to its domain's default. The
/// password is left empty, which keeps the account's: it is read only when it must be set (see
/// [`apply`]); the aliases are the spec's.
fn build(mailbox: &Mailbox, domain: &MailDomain) -> UpsertAccountRequest {
    let (storage, messages) = quota_limits(mailbox.spec.quota.as_ref(), domain.spec.default_quota.as_ref());
    UpsertAccountRequest {
        address: mailbox.spec.address.clone(),
        password: String::new(),
        quota_storage: Some(storage),
        quota_messages: Some(messages),
        suspended: Some(mailbox.spec.suspended),
    }
}

/// Brings the account in the mailstore to `desired`; returns it as the mailstore then holds it,
/// or why the Mailbox is not ready.
async fn apply(
    mailbox: &Mailbox,
    namespace: &str,
    ctx: &Context,
    domain: &MailDomain,
    desired: &UpsertAccountRequest,
    secret_version: &str,
) -> Result<std::result::Result<Account, NotReady>> {
    let Admin { url, client: mut admin } = ctx.admin(&domain.spec.cluster_ref.name, namespace).await?;
    let known_version = mailbox.status.as_ref().and_then(|status| status.password_secret_version.as_deref());
    let existing = match admin.get_account(GetAccountRequest { address: desired.address.clone() }).await {
        Ok(account) => Some(account.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Ok(Err(mailstore_failed(&url, status))),
    };
    // The password is read only when the mailstore must be given it: for a new account, or
    // after its Secret changed (hashing is deliberately slow, and reading it is an API call).
    let password = if existing.is_none() || known_version != Some(secret_version) {
        let reference = &mailbox.spec.password_secret_ref;
        match read_password(ctx, namespace, reference).await? {
            Some(password) => Some(password),
            None => {
                let message = format!("Secret {} has no non-empty key {}", reference.name, reference.key);
                let ready = Found::no(READY, "PasswordSecretNotFound", message);
                return Ok(Err(NotReady { ready, next: Action::await_change() }));
            }
        }
    } else {
        None
    };
    let synced = sync_account(&mut admin, mailbox, desired, existing, password.as_deref()).await;
    Ok(synced.map_err(|status| mailstore_failed(&url, status)))
}

/// The password in the Secret `reference` names, without the line end an editor leaves;
/// `None` if the Secret or its key is missing or empty.
async fn read_password(ctx: &Context, namespace: &str, reference: &SecretKeyRef) -> Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get_opt(&reference.name).await?;
    Ok(secret
        .as_ref()
        .and_then(|secret| secret.data.as_ref()?.get(&reference.key))
        .map(|value| String::from_utf8_lossy(&value.0).trim_end_matches(['\r', '\n']).to_string())
        .filter(|password| !password.is_empty()))
}

/// Why the Mailbox is not ready after the mailstore failed a call: unavailable (tried again
/// soon) or refusing (an address taken by an alias, an alias taken by an account: only a change
/// to the spec helps).
fn mailstore_failed(url: &str, status: tonic::Status) -> NotReady {
    if unavailable(&status) {
        let message = format!("the mailstore at {url}: {}", status.message());
        NotReady { ready: Found::no(READY, "MailstoreUnavailable", message), next: Action::requeue(WAIT) }
    } else {
        let ready = Found::no(READY, "MailstoreRefused", status.message().to_string());
        NotReady { ready, next: Action::await_change() }
    }
}

/// Brings the account to `desired`: created or updated with its quota and suspension (only
/// when they differ), the password set when given, and its aliases made exactly the spec's.
/// Returns the account as the mailstore then holds it.
async fn sync_account(
    admin: &mut AdminClient<Channel>,
    mailbox: &Mailbox,
    desired: &UpsertAccountRequest,
    existing: Option<Account>,
    password: Option<&str>,
) -> Result<Account, tonic::Status> {
    let up_to_date = existing.as_ref().is_some_and(|account| {
        (Some(account.quota_storage), Some(account.quota_messages), Some(account.suspended))
            == (desired.quota_storage, desired.quota_messages, desired.suspended)
    });
    let mut account = match existing {
        Some(account) if up_to_date && password.is_none() => account,
        existing => {
            let request =
                UpsertAccountRequest { password: password.unwrap_or_default().to_string(), ..desired.clone() };
            let mut account = admin.upsert_account(request).await?.into_inner();
            account.aliases = existing.map(|existing| existing.aliases).unwrap_or_default();
            account
        }
    };
    for alias in account.aliases.iter().filter(|alias| !mailbox.spec.aliases.contains(alias)) {
        admin.remove_alias(RemoveAliasRequest { address: alias.clone() }).await?;
    }
    for alias in mailbox.spec.aliases.iter().filter(|alias| !account.aliases.contains(alias)) {
        admin.add_alias(AddAliasRequest { address: alias.clone(), target: desired.address.clone() }).await?;
    }
    account.aliases = mailbox.spec.aliases.clone();
    Ok(account)
}

/// Writes Ready and the account's usage against its quota; the Mailbox is looked at again to
/// refresh the usage.
async fn report_status(
    mailbox: &Mailbox,
    namespace: &str,
    ctx: &Context,
    desired: &UpsertAccountRequest,
    account: &Account,
    secret_version: String,
) -> Result<Action> {
    let usage = Amounts {
        storage: Some(format_bytes(account.used_storage)),
        storage_bytes: Some(account.used_storage),
        messages: Some(account.used_messages),
    };
    // 0 is no limit.
    let storage = desired.quota_storage.filter(|&bytes| bytes > 0);
    let limits = Amounts {
        storage: storage.map(format_bytes),
        storage_bytes: storage,
        messages: desired.quota_messages.filter(|&messages| messages > 0),
    };
    let message = if mailbox.spec.suspended { "the account is suspended" } else { "the account receives mail" };
    let reason = if mailbox.spec.suspended { "Suspended" } else { "AccountReady" };
    let found = Found::yes(READY, reason, message);
    write_status(mailbox, namespace, ctx, found, Some((usage, limits)), Some(secret_version)).await?;
    Ok(Action::requeue(ctx.usage_refresh))
}

/// Writes why the Mailbox is not ready; what is known of the account stays as it was.
async fn report_not_ready(mailbox: &Mailbox, namespace: &str, ctx: &Context, not_ready: NotReady) -> Result<Action> {
    write_status(mailbox, namespace, ctx, not_ready.ready, None, None).await?;
    Ok(not_ready.next)
}

/// Writes the status `ready` and what is known of the account, when that differs from what the
/// Mailbox shows: a reconcile that finds nothing changed writes nothing.
async fn write_status(
    mailbox: &Mailbox,
    namespace: &str,
    ctx: &Context,
    ready: Found,
    amounts: Option<(Amounts, Amounts)>,
    password_secret_version: Option<String>,
) -> Result<()> {
    let previous = mailbox.status.clone().unwrap_or_default();
    let conditions = status::conditions(&previous.conditions, &[ready], mailbox.meta().generation, Timestamp::now());
    for changed in status::changed(&previous.conditions, &conditions) {
        let warning = changed.status == "False";
        ctx.event(&mailbox.object_ref(&()), warning, &changed.reason, changed.message.clone(), "Reconcile").await;
    }
    // What is not known now (the mailstore did not answer) stays as it was.
    let (usage, quota) = match amounts {
        Some((usage, quota)) => (Some(usage), Some(quota)),
        None => (previous.usage.clone(), previous.quota.clone()),
    };
    let status = MailboxStatus {
        observed_generation: mailbox.meta().generation,
        conditions,
        usage,
        quota,
        password_secret_version: password_secret_version.or(previous.password_secret_version.clone()),
    };
    if mailbox.status.as_ref() == Some(&status) {
        return Ok(());
    }
    status::patch(&Api::<Mailbox>::namespaced(ctx.client.clone(), namespace), mailbox, status).await
}

/// The account after its Mailbox is deleted: suspended with its mail kept (`Retain`), or
/// removed with its mail (`Delete`). An unreachable mailstore keeps the finalizer until it
/// answers, so the account is never left active by mistake, unless its MailCluster is gone
/// too (see [`super::mailstore_gone`]).
async fn remove_mailbox(mailbox: &Mailbox, namespace: &str, ctx: &Context) -> Result<Action> {
    let address = mailbox.spec.address.clone();
    let Some(domain) = ctx.caches.domain_of_address(namespace, &address).await else {
        // Without its MailDomain there is no telling which mailstore holds it.
        let note = format!("no MailDomain for {address}: the account, if any, is left as it is");
        ctx.event(&mailbox.object_ref(&()), true, "AccountLeft", note, "Delete").await;
        return Ok(Action::await_change());
    };
    let cluster = &domain.spec.cluster_ref.name;
    let url = ctx.mailstores.url(cluster, namespace);
    let purge = mailbox.spec.deletion_policy == DeletionPolicy::Delete;
    let deleted = match ctx.admin_for_removal(cluster, namespace).await? {
        Ok(mut admin) => admin.client.delete_account(DeleteAccountRequest { address: address.clone(), purge }).await,
        Err(down) => Err(down),
    };
    match deleted {
        Ok(_) => {
            let (reason, note) = if purge {
                ("AccountDeleted", format!("{address} and its mail were deleted"))
            } else {
                ("AccountRetained", format!("{address} is suspended; its mail is kept"))
            };
            ctx.event(&mailbox.object_ref(&()), false, reason, note, "Delete").await;
        }
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) if unavailable(&status) && super::mailstore_gone(ctx, namespace, cluster).await => {
            let note = format!(
                "MailCluster {cluster} is gone and its mailstore at {url} does not answer: {address} is left in its database"
            );
            ctx.event(&mailbox.object_ref(&()), true, "MailstoreGone", note, "Delete").await;
        }
        Err(status) => return Err(Error::Mailstore(status)),
    }
    Ok(Action::await_change())
}
