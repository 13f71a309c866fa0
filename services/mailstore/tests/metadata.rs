//! METADATA (RFC 5464): entries of a mailbox and of the server view, read to a depth, set and
//! removed all together; names checked and matched in any case; values and entry counts
//! limited; a mailbox's entries kept across RENAME and gone with DELETE. Every test runs
//! against PostgreSQL and SQLite, through the real gRPC server.

mod common;

use common::{Backend, Fixture};
use kubemail_proto::mailstore::*;
use tonic::Code;

on_both_backends!(metadata_is_set_read_and_removed, metadata_limits_and_bad_names_are_refused);

fn entry(name: &str, value: Option<&str>) -> MetadataEntry {
    MetadataEntry { name: name.into(), value: value.map(|value| value.as_bytes().to_vec()) }
}

async fn read(
    f: &mut Fixture,
    account_id: i64,
    mailbox: &str,
    names: &[&str],
    depth: MetadataDepth,
) -> Vec<(String, Option<String>)> {
    let request = GetMetadataRequest {
        account_id,
        mailbox: mailbox.into(),
        entries: names.iter().map(|name| name.to_string()).collect(),
        depth: depth as i32,
    };
    let entries = f.mailstore.get_metadata(request).await.unwrap().into_inner().entries;
    entries.into_iter().map(|entry| (entry.name, entry.value.map(|value| String::from_utf8(value).unwrap()))).collect()
}

async fn write(
    f: &mut Fixture,
    account_id: i64,
    mailbox: &str,
    entries: Vec<MetadataEntry>,
) -> Result<(), tonic::Status> {
    let request = SetMetadataRequest { account_id, mailbox: mailbox.into(), entries };
    f.mailstore.set_metadata(request).await.map(drop)
}

async fn metadata_is_set_read_and_removed(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let set = vec![
        entry("/private/comment", Some("my inbox")),
        entry("/shared/vendor/kubemail/colour", Some("blue")),
        entry("/shared/vendor/kubemail/sort/key", Some("date")),
    ];
    write(&mut f, alice, "INBOX", set).await.unwrap();
    write(&mut f, alice, "", vec![entry("/private/vendor/kubemail/theme", Some("dark"))]).await.unwrap();

    let got = read(&mut f, alice, "INBOX", &["/PRIVATE/Comment", "/shared/comment"], MetadataDepth::Zero).await;
    assert_eq!(got, [("/private/comment".into(), Some("my inbox".into())), ("/shared/comment".into(), None)]);
    let one = read(&mut f, alice, "INBOX", &["/shared/vendor/kubemail"], MetadataDepth::One).await;
    assert_eq!(
        one,
        [("/shared/vendor/kubemail".into(), None), ("/shared/vendor/kubemail/colour".into(), Some("blue".into()))]
    );
    let all = read(&mut f, alice, "INBOX", &["/shared/vendor"], MetadataDepth::Infinity).await;
    assert_eq!(all.len(), 3, "{all:?}");
    let server = read(&mut f, alice, "", &["/private/vendor/kubemail/theme"], MetadataDepth::Zero).await;
    assert_eq!(server, [("/private/vendor/kubemail/theme".into(), Some("dark".into()))], "the server view is apart");

    // Removing is setting without a value; both in one call.
    let change = vec![entry("/private/comment", None), entry("/shared/comment", Some("team"))];
    write(&mut f, alice, "INBOX", change).await.unwrap();
    let got = read(&mut f, alice, "INBOX", &["/private/comment", "/shared/comment"], MetadataDepth::Zero).await;
    assert_eq!(got, [("/private/comment".into(), None), ("/shared/comment".into(), Some("team".into()))]);

    // RENAME keeps them, DELETE drops them (a new mailbox of the old name has none).
    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Lists".into(), ..Default::default() })
        .await
        .unwrap();
    write(&mut f, alice, "Lists", vec![entry("/private/comment", Some("lists"))]).await.unwrap();
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Lists".into(), to: "Groups".into() })
        .await
        .unwrap();
    let kept = read(&mut f, alice, "Groups", &["/private/comment"], MetadataDepth::Zero).await;
    assert_eq!(kept, [("/private/comment".into(), Some("lists".into()))]);
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Groups".into() }).await.unwrap();
    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Groups".into(), ..Default::default() })
        .await
        .unwrap();
    let gone = read(&mut f, alice, "Groups", &["/private/comment"], MetadataDepth::Zero).await;
    assert_eq!(gone, [("/private/comment".into(), None)]);
}

async fn metadata_limits_and_bad_names_are_refused(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for name in ["/comment", "/private/", "/private//x", "/shared/a*", "private/x", "/shared/a/"] {
        let refused = write(&mut f, alice, "INBOX", vec![entry(name, Some("x"))]).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name}");
    }
    let missing = write(&mut f, alice, "Nowhere", vec![entry("/private/comment", Some("x"))]).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let big = "x".repeat(METADATA_MAX_VALUE + 1);
    let refused = write(&mut f, alice, "INBOX", vec![entry("/private/big", Some(&big))]).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange);
    let many: Vec<MetadataEntry> =
        (0..=METADATA_MAX_ENTRIES).map(|i| entry(&format!("/private/n{i}"), Some("v"))).collect();
    let refused = write(&mut f, alice, "INBOX", many).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // All or none: the refused calls left nothing behind, and a good entry in a bad call neither.
    let mixed = vec![entry("/private/good", Some("x")), entry("/bad", Some("x"))];
    assert_eq!(write(&mut f, alice, "INBOX", mixed).await.unwrap_err().code(), Code::InvalidArgument);
    let left = read(&mut f, alice, "INBOX", &["/private"], MetadataDepth::Infinity).await;
    assert_eq!(left, [("/private".into(), None)]);
}
