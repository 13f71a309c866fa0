//! Mailboxes: create, rename, delete, subscribe (subscriptions are names, apart from the
//! mailboxes); \Recent taken once; UIDs and UIDVALIDITY; the counters; the SELECT
//! snapshot, its deltas and its sizes. Every test runs against PostgreSQL and SQLite, through the
//! real gRPC server, with real clients.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Fixture, add_deleted, assert_counters_match, flags, message, uid_range};
use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::*;
use kubemail_runtime::EventBus;
use tonic::Code;

on_both_backends!(
    uids_ascend_never_repeat_and_uidvalidity_changes_on_recreate,
    mailboxes_create_rename_delete_subscribe,
    subscriptions_are_names_apart_from_mailboxes,
    each_message_is_taken_as_recent_once,
    renames_match_names_exactly_and_refuse_clashes,
    mailbox_counters_follow_every_change,
    a_known_snapshot_is_reported_unchanged_until_the_mailbox_changes,
    a_snapshot_with_sizes_gives_every_message_its_size
);

async fn uids_ascend_never_repeat_and_uidvalidity_changes_on_recreate(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(f.deliver(&format!("q-{i}"), "alice@example.org", &message("u", 100)).await.unwrap().uid);
    }
    assert_eq!(uids, vec![1, 2, 3]);
    let inbox = f.select(alice, "INBOX").await;
    let mailbox_id = inbox.mailbox.as_ref().unwrap().id;
    f.mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(3, 3)],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Deleted as u32, &[]),
            unchanged_since: 0,
            held: Vec::new(),
        })
        .await
        .unwrap();
    let expunged =
        f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id, uids: vec![] }).await.unwrap().into_inner();
    assert_eq!(expunged.expunged, vec![3]);
    let next = f.deliver("q-3", "alice@example.org", &message("u", 100)).await.unwrap();
    assert_eq!(next.uid, 4, "the expunged UID 3 is never handed out again");
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!(inbox.uids, vec![1, 2, 4]);
    assert_eq!(inbox.mailbox.unwrap().uidnext, 5);

    let created = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Projects".into(), special_use: String::new() })
        .await
        .unwrap()
        .into_inner();
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Projects".into() }).await.unwrap();
    let recreated = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Projects".into(), special_use: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(created.uidvalidity, recreated.uidvalidity, "a recreated mailbox gets a new UIDVALIDITY");
    assert!(recreated.uidvalidity > created.uidvalidity);
    assert_eq!(recreated.uidnext, 1);
}

async fn mailboxes_create_rename_delete_subscribe(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let names = async |f: &mut Fixture| -> Vec<String> {
        f.mailstore
            .list_mailboxes(ListMailboxesRequest { account_id: alice })
            .await
            .unwrap()
            .into_inner()
            .mailboxes
            .into_iter()
            .map(|m| m.name)
            .collect()
    };
    let created = f
        .mailstore
        .create_mailbox(CreateMailboxRequest {
            account_id: alice,
            name: "Work/2026/Q4".into(),
            special_use: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "Work/2026/Q4");
    assert_eq!(
        names(&mut f).await,
        vec!["Drafts", "INBOX", "Junk", "Sent", "Trash", "Work", "Work/2026", "Work/2026/Q4"],
        "parents are created"
    );

    let renamed = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Work".into(), to: "Archive/Work".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.id),
        ("Archive/Work", f.select(alice, "Archive/Work").await.mailbox.unwrap().id)
    );
    assert_eq!(
        names(&mut f).await,
        vec![
            "Archive",
            "Archive/Work",
            "Archive/Work/2026",
            "Archive/Work/2026/Q4",
            "Drafts",
            "INBOX",
            "Junk",
            "Sent",
            "Trash"
        ]
    );
    let into_child = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Archive".into(), to: "Archive/Work/x".into() })
        .await;
    assert_eq!(into_child.unwrap_err().code(), Code::InvalidArgument);
    let onto_existing = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Archive".into(), to: "Sent".into() })
        .await;
    assert_eq!(onto_existing.unwrap_err().code(), Code::AlreadyExists);

    // Renaming INBOX moves its messages and leaves it empty.
    for i in 0..2 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message("inbox", 100)).await.unwrap();
    }
    let old_inbox = f.select(alice, "INBOX").await.mailbox.unwrap();
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "inbox".into(), to: "Old".into() })
        .await
        .unwrap();
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!((inbox.uids.len(), inbox.mailbox.as_ref().unwrap().id), (0, old_inbox.id));
    assert!(inbox.mailbox.unwrap().uidnext >= 3, "INBOX keeps counting UIDs");
    assert_eq!(f.select(alice, "Old").await.uids, vec![1, 2]);
    let quota = f.quota(alice).await;
    assert_eq!(quota.messages_used, 2, "moving messages by rename does not change usage");

    f.mailstore
        .set_subscribed(SetSubscribedRequest { account_id: alice, name: "Old".into(), subscribed: false })
        .await
        .unwrap();
    let listed =
        f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap().into_inner().mailboxes;
    let old = listed.iter().find(|m| m.name == "Old").unwrap();
    assert!(!old.subscribed);
    assert_eq!((old.messages, old.unseen), (2, 2));
    assert_eq!(listed.iter().find(|m| m.name == "Sent").unwrap().special_use, "Sent");

    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Old".into() }).await.unwrap();
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (0, 0), "deleting a mailbox frees its usage");
    assert!(!names(&mut f).await.contains(&"Old".to_string()));
}

async fn subscriptions_are_names_apart_from_mailboxes(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let listing = async |f: &mut Fixture| -> (Vec<String>, Vec<String>) {
        let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap().into_inner();
        let subscribed = listed.mailboxes.into_iter().filter(|m| m.subscribed).map(|m| m.name).collect();
        (subscribed, listed.subscribed_without_mailbox)
    };
    let subscribe = async |f: &mut Fixture, name: &str, subscribed: bool| {
        let request = SetSubscribedRequest { account_id: alice, name: name.into(), subscribed };
        f.mailstore.set_subscribed(request).await.map(|_| ())
    };
    let defaults: Vec<String> = ["Drafts", "INBOX", "Junk", "Sent", "Trash"].map(String::from).to_vec();
    assert_eq!(listing(&mut f).await, (defaults.clone(), vec![]), "a new account's folders are subscribed");

    let create = CreateMailboxRequest { account_id: alice, name: "Projects/Old".into(), special_use: String::new() };
    f.mailstore.create_mailbox(create).await.unwrap();
    assert_eq!(listing(&mut f).await.0, defaults, "CREATE does not subscribe");

    subscribe(&mut f, "Projects/Old", true).await.unwrap();
    subscribe(&mut f, "Projects/Old", true).await.expect("subscribing twice is no error");
    subscribe(&mut f, "Later", true).await.expect("a name with no mailbox can be subscribed");
    let (subscribed, without_mailbox) = listing(&mut f).await;
    assert!(subscribed.contains(&"Projects/Old".to_string()), "{subscribed:?}");
    assert_eq!(without_mailbox, ["Later"]);

    let rename = RenameMailboxRequest { account_id: alice, from: "Projects".into(), to: "Attic".into() };
    f.mailstore.rename_mailbox(rename).await.unwrap();
    let (subscribed, _) = listing(&mut f).await;
    assert!(subscribed.contains(&"Attic/Old".to_string()), "a renamed child keeps its subscription: {subscribed:?}");
    assert!(!subscribed.contains(&"Attic".to_string()), "its parent was not subscribed");

    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Attic/Old".into() }).await.unwrap();
    assert_eq!(listing(&mut f).await.1, ["Attic/Old", "Later"], "DELETE does not unsubscribe");
    let create = CreateMailboxRequest { account_id: alice, name: "Later".into(), special_use: String::new() };
    f.mailstore.create_mailbox(create).await.unwrap();
    assert!(listing(&mut f).await.0.contains(&"Later".to_string()), "a mailbox made later has the subscription");

    subscribe(&mut f, "Attic/Old", false).await.unwrap();
    subscribe(&mut f, "Never/Was", false).await.expect("unsubscribing a name not subscribed is no error");
    assert_eq!(listing(&mut f).await.1, Vec::<String>::new());
    let refused = subscribe(&mut f, "bad*name", true).await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
}

async fn each_message_is_taken_as_recent_once(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let mallory = f.account("mallory@example.org", 0, 0).await;
    for i in 0..3 {
        f.deliver(&format!("r-{i}"), "alice@example.org", &message("recent", 100)).await.unwrap();
    }
    let inbox = async |f: &mut Fixture| -> MailboxInfo {
        let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap();
        listed.into_inner().mailboxes.into_iter().find(|m| m.name == "INBOX").unwrap()
    };
    let before = inbox(&mut f).await;
    assert_eq!((before.recent_uid, before.recent), (0, 3));
    let claim = async |f: &mut Fixture, account_id: i64, up_to_uid: u32| {
        let request = ClaimRecentRequest { account_id, mailbox_id: before.id, up_to_uid };
        f.mailstore.claim_recent(request).await.map(|answer| {
            let answer = answer.into_inner();
            (answer.first_uid, answer.last_uid)
        })
    };
    assert_eq!(claim(&mut f, alice, 2).await.unwrap(), (1, 2));
    assert_eq!(claim(&mut f, alice, 2).await.unwrap(), (3, 2), "taken already: an empty range");
    assert_eq!(claim(&mut f, alice, 99).await.unwrap(), (3, 3), "no further than the messages stored");
    let after = inbox(&mut f).await;
    assert_eq!((after.recent_uid, after.recent), (3, 0));
    assert_eq!(claim(&mut f, mallory, 99).await.unwrap_err().code(), Code::NotFound, "not another account's");

    // Sessions on many frontends claiming at once: each message goes to exactly one.
    for i in 3..13 {
        f.deliver(&format!("r-{i}"), "alice@example.org", &message("recent", 100)).await.unwrap();
    }
    let claims = (0..8).map(|_| {
        let mut mailstore = f.mailstore.clone();
        async move {
            let request = ClaimRecentRequest { account_id: alice, mailbox_id: before.id, up_to_uid: 13 };
            let answer = mailstore.claim_recent(request).await.unwrap().into_inner();
            (answer.first_uid, answer.last_uid)
        }
    });
    let taken: Vec<(u32, u32)> = futures::future::join_all(claims).await;
    let mut uids: Vec<u32> = taken.iter().flat_map(|(first, last)| *first..=*last).collect();
    uids.sort_unstable();
    assert_eq!(uids, (4..=13).collect::<Vec<u32>>(), "{taken:?}");
}

async fn renames_match_names_exactly_and_refuse_clashes(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for name in ["Work/a", "work/b", "A/x", "B/x"] {
        f.mailstore
            .create_mailbox(CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() })
            .await
            .unwrap();
    }
    let names = async |f: &mut Fixture| -> Vec<String> {
        let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap();
        listed.into_inner().mailboxes.into_iter().map(|m| m.name).collect()
    };
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Work".into(), to: "Done".into() })
        .await
        .unwrap();
    let after = names(&mut f).await;
    assert!(
        after.contains(&"Done/a".to_string()) && after.contains(&"work/b".to_string()),
        "only Work's children move: {after:?}"
    );

    // B's child outlived B: renaming A to B would put A/x onto B/x.
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "B".into() }).await.unwrap();
    let before = names(&mut f).await;
    let clash =
        f.mailstore.rename_mailbox(RenameMailboxRequest { account_id: alice, from: "A".into(), to: "B".into() }).await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(names(&mut f).await, before, "a refused rename changes nothing");

    // Renaming INBOX moves its mail: a session on INBOX sees it expunged.
    let delivered = f.deliver("q-1", "alice@example.org", &message("moving", 100)).await.unwrap();
    let mut events = f.bus.subscribe(&format!("events.{alice}.{}", delivered.mailbox_id)).await.unwrap();
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "INBOX".into(), to: "Old".into() })
        .await
        .unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    let event = MailboxEvent::decode(event.payload).unwrap();
    assert!(matches!(event.change, Some(Change::Expunged(ref e)) if e.uids == vec![delivered.uid]), "{event:?}");
    assert!(f.select(alice, "INBOX").await.uids.is_empty());
    assert_eq!(f.select(alice, "Old").await.uids.len(), 1);
}

async fn mailbox_counters_follow_every_change(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..4 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), 200 + i * 50)).await.unwrap();
    }
    // A subaddress is resolved by the general path, which writes with statements of its own.
    f.deliver("q-sub", "alice+lists@example.org", &message("sub", 180)).await.unwrap();
    assert_counters_match(&mut f, alice, "after delivery").await;
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let store = |uids: Vec<UidRange>, operation: Operation, system: u32| StoreFlagsRequest {
        account_id: alice,
        mailbox_id: inbox,
        uids,
        operation: operation as i32,
        flags: flags(system, &["$Label"]),
        unchanged_since: 0,
        held: Vec::new(),
    };
    let seen = SystemFlag::Seen as u32;
    let deleted = SystemFlag::Deleted as u32;
    f.mailstore.store_flags(store(vec![uid_range(1, 2)], Operation::Add, seen)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(2, 3)], Operation::Add, deleted)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(1, 1)], Operation::Remove, seen)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(4, 4)], Operation::Replace, seen | deleted)).await.unwrap();
    assert_counters_match(&mut f, alice, "after STORE").await;

    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Keep".into(), special_use: String::new() })
        .await
        .unwrap();
    f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await.unwrap();
    f.copy(alice, inbox, vec![uid_range(3, 3)], "Keep", true).await.unwrap();
    assert_counters_match(&mut f, alice, "after COPY and MOVE").await;
    let body = message("appended", 321);
    let header = AppendHeader {
        account_id: alice,
        mailbox: "Keep".into(),
        flags: flags(seen | deleted, &[]),
        internal_date: 0,
        size: body.len() as u64,
    };
    let appended = [
        AppendChunk { part: Some(append_chunk::Part::Header(header)) },
        AppendChunk { part: Some(append_chunk::Part::Data(body)) },
    ];
    f.mailstore.append(futures::stream::iter(appended)).await.unwrap();
    assert_counters_match(&mut f, alice, "after APPEND").await;

    f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] }).await.unwrap();
    let nothing = f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] }).await;
    assert!(nothing.unwrap().into_inner().expunged.is_empty(), "nothing left to expunge");
    assert_counters_match(&mut f, alice, "after EXPUNGE").await;
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Keep".into() }).await.unwrap();
    assert_counters_match(&mut f, alice, "after DELETE").await;
}

/// SELECT of a snapshot the caller holds: unchanged while nothing changed, then only what
/// changed since; another mailbox's snapshot gets the whole mailbox.
async fn a_known_snapshot_is_reported_unchanged_until_the_mailbox_changes(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("one", 200)).await.unwrap();
    let select = |known: &SelectMailboxResponse| {
        let mailbox = known.mailbox.clone().unwrap();
        SelectMailboxRequest {
            account_id: alice,
            name: "INBOX".into(),
            known_mailbox_id: mailbox.id,
            known_modseq: mailbox.highest_modseq,
            with_sizes: false,
        }
    };
    let full = f.select(alice, "INBOX").await;
    let same = f.mailstore.select_mailbox(select(&full)).await.unwrap().into_inner();
    assert!(same.unchanged && same.uids.is_empty(), "only the mailbox comes back: {same:?}");
    assert_eq!(same.mailbox.as_ref().map(|m| m.messages), Some(1), "with its counters");

    let inbox = full.mailbox.as_ref().unwrap().id;
    let mut known = full;
    for what in ["a delivery", "a flag", "an expunge"] {
        match what {
            "a delivery" => drop(f.deliver("q-2", "alice@example.org", &message("two", 200)).await.unwrap()),
            "a flag" => {
                let request = add_deleted(alice, inbox, vec![uid_range(1, 1)]);
                f.mailstore.store_flags(request).await.unwrap();
            }
            _ => {
                let request = ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] };
                f.mailstore.expunge(request).await.unwrap();
            }
        }
        let reply = f.mailstore.select_mailbox(select(&known)).await.unwrap().into_inner();
        assert!(!reply.unchanged && reply.delta, "after {what}, what changed since: {reply:?}");
        let (changed, expunged) = match what {
            "a delivery" => (vec![2], vec![]),
            "a flag" => (vec![1], vec![]),
            _ => (vec![], vec![1]),
        };
        assert_eq!((reply.uids.clone(), reply.expunged.clone()), (changed, expunged), "after {what}");
        if what == "a flag" {
            assert_eq!(reply.flags, [SystemFlag::Deleted as u32]);
        }
        known = reply;
    }
    // Changed in another order than their UIDs: the delta still comes in UID order.
    f.deliver("q-3", "alice@example.org", &message("three", 200)).await.unwrap();
    f.deliver("q-4", "alice@example.org", &message("four", 200)).await.unwrap();
    let seen = StoreFlagsRequest {
        account_id: alice,
        mailbox_id: inbox,
        uids: vec![uid_range(2, 2)],
        operation: Operation::Add as i32,
        flags: flags(SystemFlag::Seen as u32, &[]),
        unchanged_since: 0,
        held: Vec::new(),
    };
    f.mailstore.store_flags(seen).await.unwrap();
    let reply = f.mailstore.select_mailbox(select(&known)).await.unwrap().into_inner();
    assert!(reply.delta, "{reply:?}");
    assert_eq!(reply.uids, [2, 3, 4]);
    assert!(reply.modseqs[0] > reply.modseqs[2], "UID 2 changed last: {reply:?}");
    let current = f.select(alice, "INBOX").await;
    assert_eq!(current.uids, [2, 3, 4]);
    let mut other = select(&known);
    other.known_mailbox_id += 1000;
    assert!(!f.mailstore.select_mailbox(other).await.unwrap().into_inner().unchanged, "another mailbox's snapshot");
}

/// POP3 numbers its maildrop from one SELECT with sizes: each message's size, as FetchMessages
/// reports it, in UID order beside the UIDs; always a whole snapshot, even for a caller that
/// holds a current one; and no sizes for IMAP, which does not ask.
async fn a_snapshot_with_sizes_gives_every_message_its_size(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for (i, length) in [700, 120, 4_000, 300].into_iter().enumerate() {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), length)).await.unwrap();
    }
    let plain = f.select(alice, "INBOX").await;
    assert!(plain.sizes.is_empty(), "IMAP's SELECT carries no sizes");
    let mailbox = plain.mailbox.clone().unwrap();
    let mut expected: Vec<(u32, u64)> =
        f.messages(alice, mailbox.id).await.iter().map(|meta| (meta.uid, meta.size)).collect();
    expected.sort();
    assert_eq!(expected.iter().map(|(_, size)| *size).collect::<BTreeSet<_>>().len(), 4, "four sizes");

    let with_sizes = SelectMailboxRequest {
        account_id: alice,
        name: "INBOX".into(),
        known_mailbox_id: mailbox.id,
        known_modseq: mailbox.highest_modseq,
        with_sizes: true,
    };
    let sized = f.mailstore.select_mailbox(with_sizes).await.unwrap().into_inner();
    assert!(!sized.unchanged && !sized.delta, "a whole snapshot, not {sized:?}");
    let listed: Vec<(u32, u64)> = sized.uids.iter().copied().zip(sized.sizes.iter().copied()).collect();
    assert_eq!((listed, sized.uids.len()), (expected, sized.sizes.len()));
    assert_eq!((sized.flags, sized.modseqs), (plain.flags, plain.modseqs), "the rest as without sizes");
    assert_eq!(sized.mailbox.unwrap().size, mailbox.size);
}
