//! Reading messages: SEARCH over metadata, bodies streamed whole, in ranges and headers only. Every
//! test runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{Backend, ConcatData, Fixture, flags, message, uid_range};
use futures::StreamExt;
use kubemail_proto::mailstore::*;

on_both_backends!(search_filters_on_flags_dates_sizes_and_uids, bodies_stream_back_whole_and_in_ranges);

async fn search_filters_on_flags_dates_sizes_and_uids(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let append = async |f: &mut Fixture, size: usize, system: u32, keywords: &[&str], date: i64| {
        f.mailstore
            .append(tokio_stream::iter(vec![
                AppendChunk {
                    part: Some(append_chunk::Part::Header(AppendHeader {
                        account_id: alice,
                        mailbox: "INBOX".into(),
                        flags: flags(system, keywords),
                        internal_date: date,
                        size: size as u64,
                    })),
                },
                AppendChunk { part: Some(append_chunk::Part::Data(message("s", size))) },
            ]))
            .await
            .unwrap()
            .into_inner()
            .uid
    };
    let day = 86_400;
    let base = 1_780_000_000;
    assert_eq!(append(&mut f, 200, SystemFlag::Seen as u32, &["$Work"], base).await, 1);
    assert_eq!(append(&mut f, 5_000, 0, &[], base + day).await, 2);
    assert_eq!(append(&mut f, 200, SystemFlag::Seen as u32 | SystemFlag::Flagged as u32, &[], base + 2 * day).await, 3);
    let mailbox_id = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let mut search = async |request: SearchRequest| {
        f.mailstore.search(SearchRequest { account_id: alice, mailbox_id, ..request }).await.unwrap().into_inner().uids
    };
    assert_eq!(
        search(SearchRequest { with_flags: flags(SystemFlag::Seen as u32, &[]), ..Default::default() }).await,
        vec![1, 3]
    );
    assert_eq!(
        search(SearchRequest { without_flags: flags(SystemFlag::Seen as u32, &[]), ..Default::default() }).await,
        vec![2]
    );
    assert_eq!(search(SearchRequest { with_flags: flags(0, &["$work"]), ..Default::default() }).await, vec![1]);
    assert_eq!(search(SearchRequest { larger: 1_000, ..Default::default() }).await, vec![2]);
    assert_eq!(search(SearchRequest { smaller: 1_000, ..Default::default() }).await, vec![1, 3]);
    assert_eq!(search(SearchRequest { since: base + day, ..Default::default() }).await, vec![2, 3]);
    assert_eq!(search(SearchRequest { before: base + day, ..Default::default() }).await, vec![1]);
    assert_eq!(
        search(SearchRequest {
            uids: vec![uid_range(2, 0)],
            with_flags: flags(SystemFlag::Seen as u32, &[]),
            ..Default::default()
        })
        .await,
        vec![3]
    );
    assert_eq!(search(SearchRequest::default()).await, vec![1, 2, 3]);
}

async fn bodies_stream_back_whole_and_in_ranges(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let big = message("big", 300 * 1024);
    let delivered = f.deliver("q-big", "alice@example.org", &big).await.unwrap();
    let meta = f
        .mailstore
        .fetch_messages(FetchMessagesRequest {
            account_id: alice,
            mailbox_id: delivered.mailbox_id,
            uids: vec![uid_range(1, 1)],
            changed_since: 0,
            with_cached: false,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let header_end = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!((meta[0].size, meta[0].header_size), (big.len() as u64, header_end as u64));

    let mailbox_id = delivered.mailbox_id;
    let mut fetch = async |offset: u64, length: u64| -> Vec<u8> {
        f.bodies(alice, mailbox_id, vec![uid_range(1, 1)], offset, length).await.concat_data()
    };
    assert_eq!(fetch(0, 0).await, big, "the whole body comes back in chunks");
    assert_eq!(fetch(0, header_end as u64).await, big[..header_end].to_vec());
    assert_eq!(fetch(100, 10).await, big[100..110].to_vec());
    assert_eq!(fetch(big.len() as u64 - 5, 100).await, big[big.len() - 5..].to_vec(), "a range past the end is cut");
    assert!(fetch(big.len() as u64 + 10, 0).await.is_empty());

    // Several messages in one call: consecutive chunks per message, the first with its length.
    let small = message("small", 100);
    f.deliver("q-small", "alice@example.org", &small).await.unwrap();
    let chunks = f.bodies(alice, mailbox_id, vec![uid_range(1, 0)], 0, 0).await;
    let first_of = |uid: u32| chunks.iter().position(|c| c.uid == uid).unwrap();
    assert!(chunks.windows(2).all(|w| w[0].uid <= w[1].uid), "messages come one after the other in UID order");
    assert_eq!(chunks[first_of(1)].length, big.len() as u64);
    assert_eq!(chunks[first_of(2)].length, small.len() as u64);
    // Each message's first chunk carries its metadata, read with the body; no other chunk does.
    for uid in [1, 2] {
        let meta = chunks[first_of(uid)].meta.clone().expect("metadata with the first chunk");
        assert_eq!((meta.uid, meta.size), (uid, if uid == 1 { big.len() } else { small.len() } as u64));
        assert!(meta.modseq > 0 && meta.internal_date > 0 && meta.header_size > 0, "{meta:?}");
    }
    assert_eq!(chunks.iter().filter(|c| c.meta.is_some()).count(), 2, "one metadata per message");
    let second: Vec<u8> = chunks.iter().filter(|c| c.uid == 2).flat_map(|c| c.data.clone()).collect();
    assert_eq!(second, small);
    let past_end = f.bodies(alice, mailbox_id, vec![uid_range(2, 2)], 10_000, 0).await;
    assert_eq!(
        past_end.iter().map(|c| (c.uid, c.data.len(), c.length)).collect::<Vec<_>>(),
        [(2, 0, 0)],
        "an empty range still names its message"
    );
    assert_eq!(past_end[0].meta.as_ref().map(|m| (m.uid, m.size)), Some((2, small.len() as u64)));

    // Many messages, read a batch at a time: each whole, in order, once; or only their headers.
    let mut sent = vec![big.clone(), small.clone()];
    for i in 0..70 {
        let body = message(&format!("many {i}"), 200 + i);
        f.deliver(&format!("q-many-{i}"), "alice@example.org", &body).await.unwrap();
        sent.push(body);
    }
    let whole = |chunks: &[BodyChunk]| -> Vec<Vec<u8>> {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for chunk in chunks {
            if chunk.length > 0 || chunk.data.is_empty() {
                bodies.push(Vec::new());
            }
            bodies.last_mut().unwrap().extend_from_slice(&chunk.data);
        }
        bodies
    };
    let all = f.bodies(alice, mailbox_id, vec![uid_range(1, 0)], 0, 0).await;
    assert_eq!(whole(&all), sent);
    let request = FetchBodyRequest {
        account_id: alice,
        mailbox_id,
        uids: vec![uid_range(2, 0)],
        headers_only: true,
        ..Default::default()
    };
    let headers: Vec<BodyChunk> =
        f.mailstore.fetch_body(request).await.unwrap().into_inner().map(|c| c.unwrap()).collect().await;
    let expected: Vec<Vec<u8>> = sent[1..]
        .iter()
        .map(|body| body[..body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4].to_vec())
        .collect();
    assert_eq!(whole(&headers), expected, "each message's header block, blank line included");
    // One message (read without looking up its size first): whole, its header, a range.
    for (headers_only, offset, length, want) in
        [(false, 0, 0, sent[1].clone()), (true, 0, 0, expected[0].clone()), (false, 3, 5, sent[1][3..8].to_vec())]
    {
        let request = FetchBodyRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(2, 2)],
            headers_only,
            offset,
            length,
            with_cached: false,
        };
        let one: Vec<BodyChunk> =
            f.mailstore.fetch_body(request).await.unwrap().into_inner().map(|c| c.unwrap()).collect().await;
        assert_eq!(whole(&one), [want], "message 2, headers only {headers_only}, from {offset} for {length}");
    }
}
