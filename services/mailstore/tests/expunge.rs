//! Removing messages: the UIDs expunged since a MODSEQ (QRESYNC) and POP3's removal. Every test
//! runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{Backend, Fixture, add_deleted, alice_with_messages, flags, uid_range};
use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::*;
use kubemail_runtime::EventBus;
use tonic::Code;

on_both_backends!(expunged_uids_are_told_since_any_modseq, pop3_removal_takes_the_listed_messages_whatever_their_flags);

/// QRESYNC's VANISHED (EARLIER): the UIDs expunged after a MODSEQ the client saw, within the
/// UIDs it names, whatever happened since; only for the account's own mailboxes.
async fn expunged_uids_are_told_since_any_modseq(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 6).await;
    let at_start = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    let expunged_since = async |f: &mut Fixture, modseq: u64, uids: Vec<UidRange>| {
        let request = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq, uids };
        f.mailstore.expunged_since(request).await.map(|answer| answer.into_inner().uids)
    };
    let expunge = async |f: &mut Fixture, uids: Vec<UidRange>| {
        let deleted = flags(SystemFlag::Deleted as u32, &[]);
        let store = StoreFlagsRequest {
            account_id: alice,
            mailbox_id: inbox,
            uids: uids.clone(),
            operation: Operation::Add as i32,
            flags: deleted,
            unchanged_since: 0,
            held: Vec::new(),
        };
        f.mailstore.store_flags(store).await.unwrap();
        f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids }).await.unwrap();
    };
    assert_eq!(expunged_since(&mut f, at_start, vec![]).await.unwrap(), Vec::<u32>::new(), "nothing yet");
    expunge(&mut f, vec![uid_range(2, 2), uid_range(4, 4)]).await;
    let between = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    expunge(&mut f, vec![uid_range(6, 6)]).await;

    assert_eq!(expunged_since(&mut f, at_start, vec![]).await.unwrap(), [2, 4, 6]);
    assert_eq!(expunged_since(&mut f, between, vec![]).await.unwrap(), [6], "only after the MODSEQ");
    assert_eq!(expunged_since(&mut f, 0, vec![uid_range(3, 5)]).await.unwrap(), [4], "only the UIDs asked");
    let latest = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    assert_eq!(expunged_since(&mut f, latest, vec![]).await.unwrap(), Vec::<u32>::new());

    let bob = f.account("bob@example.org", 0, 0).await;
    let foreign = ExpungedSinceRequest { account_id: bob, mailbox_id: inbox, modseq: 0, uids: vec![] };
    let refused = f.mailstore.expunged_since(foreign).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "another account's mailbox: {refused:?}");
    let bad = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq: 0, uids: vec![uid_range(0, 3)] };
    assert_eq!(f.mailstore.expunged_since(bad).await.unwrap_err().code(), Code::InvalidArgument, "UID 0");
}

/// POP3's UPDATE state removes the messages its client marked, in one call: those listed go
/// whether or not they carry \Deleted, nothing else does (not even a \Deleted message outside
/// the list), and an IMAP client sees them expunged as usual.
async fn pop3_removal_takes_the_listed_messages_whatever_their_flags(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 6).await;
    let flagged_elsewhere = add_deleted(alice, inbox, vec![uid_range(5, 5)]);
    f.mailstore.store_flags(flagged_elsewhere).await.unwrap();
    let at_start = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    let mut events = f.bus.subscribe(&format!("events.{alice}.*")).await.unwrap();
    let remove = async |f: &mut Fixture, account_id: i64, uids: Vec<UidRange>| {
        let request = RemoveMessagesRequest { account_id, mailbox_id: inbox, uids };
        f.mailstore.remove_messages(request).await.map(|answer| answer.into_inner())
    };

    let removed = remove(&mut f, alice, vec![uid_range(2, 3), uid_range(6, 6)]).await.unwrap();
    assert_eq!(removed.expunged, [2, 3, 6]);
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.uids, [1, 4, 5], "the \\Deleted message not listed stays");
    assert_eq!(removed.highest_modseq, after.mailbox.unwrap().highest_modseq);
    assert_eq!(f.quota(alice).await.messages_used, 3);
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    let event = MailboxEvent::decode(event.payload).unwrap();
    assert!(matches!(event.change, Some(Change::Expunged(ref e)) if e.uids == [2, 3, 6]), "{event:?}");
    let since = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq: at_start, uids: vec![] };
    assert_eq!(f.mailstore.expunged_since(since).await.unwrap().into_inner().uids, [2, 3, 6], "for QRESYNC");

    assert!(remove(&mut f, alice, vec![]).await.unwrap().expunged.is_empty(), "no list, no removal");
    assert!(remove(&mut f, alice, vec![uid_range(2, 3)]).await.unwrap().expunged.is_empty(), "already gone");
    let bob = f.account("bob@example.org", 0, 0).await;
    let foreign = remove(&mut f, bob, vec![uid_range(1, 0)]).await;
    assert_eq!(foreign.unwrap_err().code(), Code::NotFound, "another account's mailbox");
    let bad = remove(&mut f, alice, vec![uid_range(0, 1)]).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument, "UID 0");
    assert_eq!(f.select(alice, "INBOX").await.uids, [1, 4, 5], "none of that changed anything");
}
