//! The directory: recipient resolution (aliases, catch-all, subaddresses), authentication, account
//! deletion. Every test runs against PostgreSQL and SQLite, through the real gRPC server, with real
//! clients.

mod common;

use common::{Backend, Fixture, message};
use kubemail_proto::admin::*;
use kubemail_proto::mailstore::resolve_recipient_response::Outcome;
use kubemail_proto::mailstore::*;
use tonic::Code;

on_both_backends!(
    directory_resolves_aliases_catch_all_and_subaddresses,
    authentication_checks_password_and_suspension,
    deleting_an_account_suspends_by_default_and_purges_on_request
);

async fn directory_resolves_aliases_catch_all_and_subaddresses(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let bob = f.account("Bob@Example.org", 0, 0).await;
    f.admin
        .add_alias(AddAliasRequest { address: "postmaster@example.org".into(), target: "alice@example.org".into() })
        .await
        .unwrap();

    let mut resolve = async |address: &str| {
        f.mailstore
            .resolve_recipient(ResolveRecipientRequest { address: address.into(), size_hint: 0 })
            .await
            .unwrap()
            .into_inner()
    };
    let direct = resolve("ALICE@example.ORG").await;
    assert_eq!(
        (direct.outcome(), direct.account_id, direct.canonical_address.as_str()),
        (Outcome::Local, alice, "alice@example.org")
    );
    assert_eq!(resolve("bob@example.org").await.account_id, bob, "addresses are case-insensitive");
    assert_eq!(resolve("postmaster@example.org").await.account_id, alice, "aliases reach their target");
    assert_eq!(resolve("alice+lists@example.org").await.account_id, alice, "subaddresses reach the base address");
    assert_eq!(resolve("nobody@example.org").await.outcome(), Outcome::UnknownRecipient);
    assert_eq!(resolve("alice@elsewhere.net").await.outcome(), Outcome::NotLocal);

    f.admin
        .upsert_domain(UpsertDomainRequest {
            name: "example.org".into(),
            catch_all: "bob@example.org".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let caught = resolve("anything@example.org").await;
    assert_eq!((caught.outcome(), caught.account_id), (Outcome::Local, bob), "catch-all takes unknown local parts");

    let domains = f.admin.list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert_eq!(domains.len(), 1);
    assert_eq!((domains[0].name.as_str(), domains[0].accounts), ("example.org", 2));
    let aliases =
        f.admin.list_aliases(ListAliasesRequest { domain: "example.org".into() }).await.unwrap().into_inner().aliases;
    assert_eq!(aliases, vec![Alias { address: "postmaster@example.org".into(), target: "alice@example.org".into() }]);
    let accounts =
        f.admin.list_accounts(ListAccountsRequest { domain: String::new() }).await.unwrap().into_inner().accounts;
    let listed: Vec<(&str, Vec<String>)> = accounts.iter().map(|a| (a.address.as_str(), a.aliases.clone())).collect();
    assert_eq!(
        listed,
        vec![("alice@example.org", vec!["postmaster@example.org".to_string()]), ("bob@example.org", vec![])]
    );

    // An alias cannot shadow an account, nor an account an alias.
    let clash = f
        .admin
        .add_alias(AddAliasRequest { address: "bob@example.org".into(), target: "alice@example.org".into() })
        .await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);
    let clash = f
        .admin
        .upsert_account(UpsertAccountRequest {
            address: "postmaster@example.org".into(),
            password: "x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);

    f.admin.remove_alias(RemoveAliasRequest { address: "postmaster@example.org".into() }).await.unwrap();
    assert_eq!(resolve("postmaster@example.org").await.account_id, bob, "with the alias gone the catch-all takes it");

    let busy = f.admin.delete_domain(DeleteDomainRequest { name: "example.org".into(), force: false }).await;
    assert_eq!(busy.unwrap_err().code(), Code::FailedPrecondition, "a domain with accounts is not dropped silently");
    f.admin.delete_domain(DeleteDomainRequest { name: "example.org".into(), force: true }).await.unwrap();
    assert_eq!(resolve("alice@example.org").await.outcome(), Outcome::NotLocal);
}

async fn authentication_checks_password_and_suspension(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.admin
        .add_alias(AddAliasRequest { address: "a@example.org".into(), target: "alice@example.org".into() })
        .await
        .unwrap();
    let mut login = async |user: &str, password: &str| {
        f.mailstore.authenticate(AuthenticateRequest { username: user.into(), password: password.into() }).await
    };
    let ok = login("Alice@example.org", "secret").await.unwrap().into_inner();
    assert_eq!((ok.account_id, ok.address.as_str()), (alice, "alice@example.org"));
    assert_eq!(ok.sender_addresses, vec!["alice@example.org", "a@example.org"]);
    assert_eq!(login("alice@example.org", "wrong").await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(login("nobody@example.org", "secret").await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(login("not an address", "secret").await.unwrap_err().code(), Code::Unauthenticated);

    f.admin
        .set_password(SetPasswordRequest { address: "alice@example.org".into(), password: "new secret".into() })
        .await
        .unwrap();
    let mut login = async |user: &str, password: &str| {
        f.mailstore.authenticate(AuthenticateRequest { username: user.into(), password: password.into() }).await
    };
    assert_eq!(login("alice@example.org", "secret").await.unwrap_err().code(), Code::Unauthenticated);
    assert!(login("alice@example.org", "new secret").await.is_ok());

    f.admin
        .upsert_account(UpsertAccountRequest {
            address: "alice@example.org".into(),
            suspended: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let denied = f
        .mailstore
        .authenticate(AuthenticateRequest { username: "alice@example.org".into(), password: "new secret".into() })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let resolved = f
        .mailstore
        .resolve_recipient(ResolveRecipientRequest { address: "alice@example.org".into(), size_hint: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.outcome(), Outcome::Disabled);
    let refused = f.deliver("q-suspended", "alice@example.org", &message("hi", 100)).await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
}

async fn deleting_an_account_suspends_by_default_and_purges_on_request(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("keep me", 100)).await.unwrap();
    let kept = f
        .admin
        .delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!kept.purged);
    let account =
        f.admin.get_account(GetAccountRequest { address: "alice@example.org".into() }).await.unwrap().into_inner();
    assert!(account.suspended);
    assert_eq!(f.select(alice, "INBOX").await.uids, vec![1], "mail is kept");

    f.admin.delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: true }).await.unwrap();
    let gone = f.admin.get_account(GetAccountRequest { address: "alice@example.org".into() }).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    let missing =
        f.admin.delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: false }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let quota = f
        .admin
        .set_quota(SetQuotaRequest { address: "ghost@example.org".into(), quota_storage: 1, quota_messages: 1 })
        .await;
    assert_eq!(quota.unwrap_err().code(), Code::NotFound);
}
