//! GETQUOTAROOT and GETQUOTA report the account's usage and limits as the mailstore counts
//! them; SETQUOTA is the administrator's.

mod common;

use common::{Fixture, PASSWORD};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::{AuthenticateRequest, GetQuotaRequest};

#[tokio::test]
async fn quota_roots_report_what_the_mailstore_counts() {
    let f = Fixture::start().await;
    // bob may store 2,000 octets.
    f.mailstore.deliver("bob@example.org", "Subject: x\r\n\r\n".repeat(40).as_bytes()).await;
    let mut client = f.logged_in("bob@example.org").await;
    let lines = client.command("q GETQUOTAROOT INBOX").await.expect_ok();

    let mut mailstore = MailStoreClient::new(f.mailstore.channel.clone());
    let login = AuthenticateRequest { username: "bob@example.org".into(), password: PASSWORD.into() };
    let account_id = mailstore.authenticate(login).await.unwrap().into_inner().account_id;
    let quota = mailstore.get_quota(GetQuotaRequest { account_id }).await.unwrap().into_inner();
    assert_eq!((quota.storage_used, quota.storage_limit), (560, 2000));
    assert_eq!(
        lines,
        ["* QUOTAROOT \"INBOX\" \"\"", "* QUOTA \"\" (STORAGE 1 1)"],
        "in units of 1,024 octets, usage rounded up and the limit down"
    );
    assert_eq!(client.command("r GETQUOTA \"\"").await.expect_ok(), ["* QUOTA \"\" (STORAGE 1 1)"]);

    for (line, code) in [
        ("a GETQUOTA other", "NO [NONEXISTENT]"),
        ("b GETQUOTAROOT Missing", "NO [NONEXISTENT]"),
        ("c SETQUOTA \"\" (STORAGE 100000)", "NO [NOPERM]"),
    ] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with(code), "{line}: {refused:?}");
    }

    let mut alice = f.logged_in("alice@example.org").await;
    let unlimited = alice.command("q GETQUOTAROOT Drafts").await.expect_ok();
    assert_eq!(unlimited, ["* QUOTAROOT \"Drafts\" \"\"", "* QUOTA \"\" ()"]);
}
