//! STORE: MODSEQs and CONDSTORE, and sessions changing the same messages at once. Every test runs
//! against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Fixture, alice_with_messages, assert_counters_match, flags, message, uid_range};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::*;

on_both_backends!(
    flag_changes_raise_modseq_and_conditional_store_respects_it,
    racing_flag_changes_to_the_same_messages_all_take_effect,
    flags_a_session_holds_wrongly_never_undo_or_miscount_a_change
);

async fn flag_changes_raise_modseq_and_conditional_store_respects_it(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..3 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message("m", 100)).await.unwrap();
    }
    let before = f.select(alice, "INBOX").await;
    let mailbox_id = before.mailbox.as_ref().unwrap().id;
    let highest = before.mailbox.as_ref().unwrap().highest_modseq;
    let mut store = async |uids: Vec<UidRange>, operation: Operation, flags: Option<Flags>, unchanged_since: u64| {
        f.mailstore
            .store_flags(StoreFlagsRequest {
                account_id: alice,
                mailbox_id,
                uids,
                operation: operation as i32,
                flags,
                unchanged_since,
                held: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let seen = store(vec![uid_range(1, 2)], Operation::Add, flags(SystemFlag::Seen as u32, &["$Label1"]), 0).await;
    assert_eq!(seen.updated.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert!(seen.updated.iter().all(|m| m.modseq > highest), "every changed message gets a higher MODSEQ");
    assert!(seen.highest_modseq > highest);
    let m1 = seen.updated[0].modseq;

    let again = store(vec![uid_range(1, 2)], Operation::Add, flags(SystemFlag::Seen as u32, &[]), 0).await;
    assert!(again.updated.is_empty(), "setting flags a message already has changes nothing");
    // The messages left as they were come back with their flags, so a STORE that answers with
    // every message's flags reads nothing more.
    let unchanged: Vec<(u32, u32, Vec<String>)> = again
        .unchanged
        .iter()
        .map(|m| (m.uid, m.flags.as_ref().unwrap().system, m.flags.as_ref().unwrap().keywords.clone()))
        .collect();
    assert_eq!(
        unchanged,
        [
            (1, SystemFlag::Seen as u32, vec!["$Label1".to_string()]),
            (2, SystemFlag::Seen as u32, vec!["$Label1".to_string()])
        ]
    );

    let removed = store(vec![uid_range(1, 1)], Operation::Remove, flags(0, &["$label1"]), 0).await;
    assert_eq!(
        removed.updated[0].flags.as_ref().unwrap().keywords,
        Vec::<String>::new(),
        "keywords match case-insensitively"
    );
    assert!(removed.updated[0].modseq > m1);

    // CONDSTORE: UID 1 changed after m1, UID 3 did not.
    let conditional =
        store(vec![uid_range(1, 0)], Operation::Replace, flags(SystemFlag::Flagged as u32, &[]), m1).await;
    assert_eq!(conditional.modified, vec![1]);
    let changed: Vec<u32> = conditional.updated.iter().map(|m| m.uid).collect();
    assert_eq!(changed, vec![2, 3]);

    // Keywords set on UID 3 before UID 1: the snapshot still lists everything in UID order.
    store(vec![uid_range(3, 3)], Operation::Add, flags(0, &["$Later"]), 0).await;
    store(vec![uid_range(1, 1)], Operation::Add, flags(0, &["$Later"]), 0).await;
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.uids, vec![1, 2, 3]);
    assert_eq!(after.flags, vec![SystemFlag::Seen as u32, SystemFlag::Flagged as u32, SystemFlag::Flagged as u32]);
    assert_eq!((after.keyword_uids.clone(), after.keywords.clone()), (vec![1, 3], vec!["$Later".to_string(); 2]));
    assert_eq!(after.mailbox_keywords, vec!["$Later".to_string()]);
    assert_eq!(after.mailbox.unwrap().highest_modseq, *after.modseqs.iter().max().unwrap());
    let changed_since = f
        .mailstore
        .fetch_messages(FetchMessagesRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![],
            changed_since: m1,
            with_cached: false,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(changed_since.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Keywords may hold what other formats treat as separators or quotes; stored for several
    // messages at once, each keeps them exactly.
    let odd = ["a,b}c", "it's", "x=y;z"];
    let replace = StoreFlagsRequest {
        account_id: alice,
        mailbox_id,
        uids: vec![uid_range(1, 3)],
        operation: Operation::Replace as i32,
        flags: flags(SystemFlag::Answered as u32, &odd),
        unchanged_since: 0,
        held: Vec::new(),
    };
    f.mailstore.store_flags(replace).await.unwrap();
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.flags, vec![SystemFlag::Answered as u32; 3]);
    assert_eq!(after.keyword_uids, vec![1, 2, 3]);
    assert!(after.keywords.iter().all(|stored| stored.split(' ').eq(odd)), "{:?}", after.keywords);
}

/// Sessions changing flags of the same messages at once: every change takes effect (none is
/// lost to another's write of the flags it read), HIGHESTMODSEQ is the last change's, and
/// undeleting races expunging without a message lost or counted twice.
async fn racing_flag_changes_to_the_same_messages_all_take_effect(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 30).await;
    let system = [SystemFlag::Seen, SystemFlag::Flagged, SystemFlag::Answered, SystemFlag::Draft];
    let writers = (0..8usize).map(|writer| {
        let mut client = f.mailstore.clone();
        let flag = system[writer % system.len()] as u32;
        tokio::spawn(async move {
            // Overlapping ranges that together cover every message, so each message is changed
            // by every writer, often at the same moment.
            for round in 0..3u32 {
                let first = 1 + (writer as u32 * 3 + round * 11) % 30;
                for uids in [uid_range(first, 30), uid_range(1, first)] {
                    let request = StoreFlagsRequest {
                        account_id: alice,
                        mailbox_id: inbox,
                        uids: vec![uids],
                        operation: Operation::Add as i32,
                        flags: flags(flag, &[&format!("$w{writer}")]),
                        unchanged_since: 0,
                        held: Vec::new(),
                    };
                    client.store_flags(request).await.map_err(|e| format!("STORE: {e}"))?;
                }
            }
            Ok::<(), String>(())
        })
    });
    for result in futures::future::join_all(writers).await {
        result.expect("task").expect("every STORE succeeds");
    }
    let snapshot = f.select(alice, "INBOX").await;
    let all_system = system.iter().fold(0, |all, flag| all | *flag as u32);
    let messages = f.messages(alice, inbox).await;
    assert_eq!(messages.len(), 30);
    for meta in &messages {
        let flags = meta.flags.clone().unwrap();
        assert_eq!(flags.system, all_system, "message {}: a system flag was lost", meta.uid);
        let keywords: BTreeSet<String> = flags.keywords.into_iter().collect();
        let expected: BTreeSet<String> = (0..8).map(|w| format!("$w{w}")).collect();
        assert_eq!(keywords, expected, "message {}: a keyword was lost", meta.uid);
    }
    assert_eq!(
        snapshot.mailbox.unwrap().highest_modseq,
        messages.iter().map(|m| m.modseq).max().unwrap(),
        "HIGHESTMODSEQ is the last change's"
    );

    // Half the sessions flag messages \Deleted and expunge, the other half take the flag off
    // again: whatever the order, a message is either gone (and no longer counted) or still
    // there, and usage matches what is left.
    let racers = (0..6u32).map(|racer| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move {
            for round in 0..4u32 {
                let first = 1 + (racer * 5 + round * 7) % 30;
                let operation = if racer % 2 == 0 { Operation::Add } else { Operation::Remove };
                let request = StoreFlagsRequest {
                    account_id: alice,
                    mailbox_id: inbox,
                    uids: vec![uid_range(first, (first + 6).min(30))],
                    operation: operation as i32,
                    flags: flags(SystemFlag::Deleted as u32, &[]),
                    unchanged_since: 0,
                    held: Vec::new(),
                };
                client.store_flags(request).await.map_err(|e| format!("STORE: {e}"))?;
                let expunge = ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] };
                client.expunge(expunge).await.map_err(|e| format!("EXPUNGE: {e}"))?;
            }
            Ok::<(), String>(())
        })
    });
    for result in futures::future::join_all(racers).await {
        result.expect("task").expect("every call succeeds");
    }
    assert_counters_match(&mut f, alice, "after undeleting raced expunging").await;
    let left = f.messages(alice, inbox).await;
    let usage = f.mailstore.get_quota(GetQuotaRequest { account_id: alice }).await.unwrap().into_inner();
    assert_eq!(
        (usage.messages_used, usage.storage_used),
        (left.len() as u64, left.iter().map(|m| m.size).sum::<u64>()),
        "the account's usage is what is left"
    );
}

/// A STORE worked out from the flags the session holds: right when they are current, and when
/// they are behind (another session changed the message since) or simply wrong, the change
/// still lands on the flags the message has, and the mailbox's counters stay true.
async fn flags_a_session_holds_wrongly_never_undo_or_miscount_a_change(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 4).await;
    let seen = SystemFlag::Seen as u32;
    let flagged = SystemFlag::Flagged as u32;
    let before = f.select(alice, "INBOX").await;
    // What a session that selected the mailbox holds: every message unflagged, as of `before`.
    let held_then = |uids: &[u32], system: u32| -> Vec<HeldFlags> {
        uids.iter()
            .map(|&uid| HeldFlags {
                uid,
                modseq: before.modseqs[uid as usize - 1],
                flags: Some(Flags { system, keywords: Vec::new() }),
            })
            .collect()
    };
    let request = |uids: Vec<UidRange>, operation: Operation, system: u32, held: Vec<HeldFlags>| StoreFlagsRequest {
        account_id: alice,
        mailbox_id: inbox,
        uids,
        operation: operation as i32,
        flags: flags(system, &[]),
        unchanged_since: 0,
        held,
    };
    let system_flags = async |f: &mut Fixture| f.select(alice, "INBOX").await.flags;

    // Current: the change is made from them.
    let current = f
        .mailstore
        .store_flags(request(vec![uid_range(1, 1)], Operation::Add, flagged, held_then(&[1], 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        current.updated.iter().map(|m| (m.uid, m.flags.clone().unwrap().system)).collect::<Vec<_>>(),
        [(1, flagged)]
    );
    assert!(current.updated[0].modseq > before.mailbox.as_ref().unwrap().highest_modseq);

    // Behind: another session read UID 2 meanwhile; adding \Flagged keeps its \Seen.
    f.mailstore.store_flags(request(vec![uid_range(2, 2)], Operation::Add, seen, Vec::new())).await.unwrap();
    let behind = f
        .mailstore
        .store_flags(request(vec![uid_range(2, 3)], Operation::Add, flagged, held_then(&[2, 3], 0)))
        .await
        .unwrap()
        .into_inner();
    let reported: Vec<(u32, u32)> = behind.updated.iter().map(|m| (m.uid, m.flags.clone().unwrap().system)).collect();
    assert_eq!(reported, [(2, seen | flagged), (3, flagged)]);
    assert_eq!(system_flags(&mut f).await, [flagged, seen | flagged, flagged, 0]);
    assert_counters_match(&mut f, alice, "after a STORE from flags held behind").await;

    // Behind and looking as asked already: UID 1 was unflagged elsewhere, the session still
    // holds it flagged as of the STORE it made; flagging it again must flag it.
    f.mailstore.store_flags(request(vec![uid_range(1, 1)], Operation::Remove, flagged, Vec::new())).await.unwrap();
    let held_flagged = vec![HeldFlags { uid: 1, modseq: current.updated[0].modseq, flags: flags(flagged, &[]) }];
    let again = f
        .mailstore
        .store_flags(request(vec![uid_range(1, 1)], Operation::Add, flagged, held_flagged))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.updated.iter().map(|m| m.uid).collect::<Vec<_>>(), [1]);
    assert!(again.unchanged.is_empty(), "{:?}", again.unchanged);
    assert_eq!(system_flags(&mut f).await, [flagged, seen | flagged, flagged, 0]);

    // Wrong at the right MODSEQ: UID 4 held as read when it is not. Removing \Seen changes
    // nothing, and the mailbox does not count one more unseen message.
    let wrong = f
        .mailstore
        .store_flags(request(vec![uid_range(4, 4)], Operation::Remove, seen, held_then(&[4], seen)))
        .await
        .unwrap()
        .into_inner();
    assert!(wrong.updated.is_empty(), "{:?}", wrong.updated);
    assert_eq!(system_flags(&mut f).await, [flagged, seen | flagged, flagged, 0]);
    assert_counters_match(&mut f, alice, "after a STORE from flags held wrongly").await;

    // Held flags must be those of exactly the set.
    let unmatched = f
        .mailstore
        .store_flags(request(vec![uid_range(1, 2)], Operation::Add, seen, held_then(&[1], 0)))
        .await
        .unwrap_err();
    assert_eq!(unmatched.code(), tonic::Code::InvalidArgument);
    assert!(unmatched.message().contains("held flags"), "{}", unmatched.message());
}
