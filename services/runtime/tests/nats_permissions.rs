//! NATS secured as the chart's example says (`charts/kubemail/examples/nats-values.yaml`), on a
//! real server: nobody gets in without a user, a password and TLS; each component can do its
//! part of the mail's way (smtp-ingress spools and queues, delivery-queue leases, reads, moves
//! aside and purges, the mailstore publishes changes the IMAP frontend hears) and nothing else.

use std::time::Duration;

use bytes::Bytes;
use kubemail_runtime::nats::{NatsAccess, NatsConfig, NatsCredentials, NatsEventBus, NatsTransport};
use kubemail_runtime::{Error, EventBus, Headers, Queue, QueueMessage, Spool};
use kubemail_testkit::NatsServer;
use tokio::sync::mpsc;

/// The production names: the permissions are written for them.
fn config(server: &NatsServer, user: &str) -> NatsConfig {
    NatsConfig { url: server.url(), access: server.access(user), ..NatsConfig::default() }
}

/// A plain async-nats connection as `user` that hands over what the server says
/// asynchronously (where refused publishes and subscriptions are reported).
async fn raw_client(server: &NatsServer, user: &str) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let credentials = NatsCredentials::from_dir(&server.credentials_dir(user)).unwrap();
    let (sender, errors) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(credentials.username, credentials.password)
        .add_root_certificates(server.ca_file())
        .require_tls(true)
        .event_callback(move |event| {
            let sender = sender.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = sender.send(error.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .expect("connects with its own user");
    (client, errors)
}

async fn refusal(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .expect("the server says why within 10 s")
        .expect("the connection is still open")
        .to_lowercase()
}

#[tokio::test]
async fn nobody_gets_in_without_a_user_and_tls() {
    let server = NatsServer::start_secured();
    let tls_only = NatsAccess { ca_file: Some(server.ca_file()), ..NatsAccess::default() };
    let refused = tls_only.connect(&server.url()).await.expect_err("no user: refused");
    assert!(matches!(refused, Error::Unavailable { what: "nats", .. }), "{refused:?}");
    assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");

    let mut wrong = server.access("smtp-ingress");
    wrong.credentials.as_mut().unwrap().password.push('x');
    let refused = wrong.connect(&server.url()).await.expect_err("a wrong password: refused");
    assert!(refused.to_string().to_lowercase().contains("authorization"), "{refused}");

    // The right user over a connection that does not trust the server's CA: TLS fails first.
    let untrusted = NatsAccess { ca_file: None, ..server.access("smtp-ingress") };
    assert!(untrusted.connect(&server.url()).await.is_err(), "a server it cannot verify is not trusted");

    let missing_ca = NatsAccess { ca_file: Some(server.ca_file().with_extension("missing")), ..NatsAccess::default() };
    let refused = missing_ca.connect(&server.url()).await.expect_err("a CA file that is not there");
    assert!(matches!(refused, Error::Config(_)), "{refused:?}");
}

#[tokio::test]
async fn each_component_does_its_part_of_the_mails_way() {
    let server = NatsServer::start_secured();
    // smtp-ingress: the body into the spool, the envelope into the queue.
    let ingress = NatsTransport::connect(&config(&server, "smtp-ingress")).await.expect("smtp-ingress connects");
    let body = Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n");
    ingress.spool.put("m-1", body.clone()).await.expect("smtp-ingress spools");
    for id in ["m-1", "m-2"] {
        let message = QueueMessage { id: id.into(), payload: format!("envelope {id}").into(), headers: Headers::new() };
        ingress.queue.publish(message).await.expect("smtp-ingress queues");
    }

    // delivery-queue: lease, read the body, deliver (ack, purge); move one aside.
    let delivery = NatsTransport::connect(&config(&server, "delivery-queue")).await.expect("delivery-queue connects");
    let mut leased = delivery.queue.pull(2, Duration::from_secs(5)).await.expect("delivery-queue leases");
    leased.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(leased.iter().map(|lease| lease.id.as_str()).collect::<Vec<_>>(), ["m-1", "m-2"]);
    assert_eq!(delivery.spool.get("m-1").await.expect("delivery-queue reads the spool"), Some(body));
    let mut leased = leased.into_iter();
    let first = leased.next().unwrap();
    first.extend().await.expect("a lease is extended");
    first.ack().await.expect("acked");
    delivery.spool.delete("m-1").await.expect("delivery-queue purges the body");
    assert_eq!(delivery.spool.get("m-1").await.unwrap(), None);
    leased.next().unwrap().dead_letter("550 no such user").await.expect("moved aside");
    let dead = delivery.queue.dead_letters(10).await.expect("delivery-queue reads the dead letters");
    assert_eq!(dead.iter().map(|letter| letter.message.id.as_str()).collect::<Vec<_>>(), ["m-2"]);
    // delivery-queue queues mail of its own: a delivery report to the sender (its body in
    // the spool), and the envelope that carries pending recipients on to a later try.
    let report = Bytes::from_static(b"Subject: Undelivered Mail\r\n\r\nsorry\r\n");
    delivery.spool.put("report-1", report.clone()).await.expect("delivery-queue spools a report");
    for id in ["report-1", "m-1.retry"] {
        let message = QueueMessage { id: id.into(), payload: format!("envelope {id}").into(), headers: Headers::new() };
        delivery.queue.publish(message).await.expect("delivery-queue queues");
    }
    let mut queued = delivery.queue.pull(2, Duration::from_secs(5)).await.expect("leases its own envelopes");
    queued.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(queued.iter().map(|lease| lease.id.as_str()).collect::<Vec<_>>(), ["m-1.retry", "report-1"]);
    assert_eq!(delivery.spool.get("report-1").await.unwrap(), Some(report));

    // The mailstore publishes a change; the IMAP frontend hears it.
    let imap = NatsEventBus::connect(&server.url(), &server.access("imap-frontend")).await.expect("imap connects");
    let mut events = imap.subscribe("events.7.*").await.expect("imap-frontend subscribes");
    let mailstore = NatsEventBus::connect(&server.url(), &server.access("mailstore")).await.expect("mailstore");
    mailstore.publish("events.7.3", Bytes::from_static(b"change"), Headers::new()).await.expect("published");
    let event = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut events))
        .await
        .expect("the change arrives")
        .expect("an event");
    assert_eq!((event.subject.as_str(), &event.payload[..]), ("events.7.3", &b"change"[..]));
}

#[tokio::test]
async fn a_component_outside_its_subjects_is_refused() {
    let server = NatsServer::start_secured();
    // The IMAP frontend cannot open the queue, let alone put mail into it.
    let refused = NatsTransport::connect(&config(&server, "imap-frontend")).await.err();
    assert!(refused.is_some(), "imap-frontend may not touch the queue's streams");

    let (imap, mut errors) = raw_client(&server, "imap-frontend").await;
    imap.publish("queue.envelope", Bytes::from_static(b"forged envelope")).await.unwrap();
    imap.flush().await.unwrap();
    let said = refusal(&mut errors).await;
    assert!(said.contains("permissions violation") && said.contains("queue.envelope"), "{said}");
    // Nothing reached the queue: the delivery workers find it empty.
    let delivery = NatsTransport::connect(&config(&server, "delivery-queue")).await.expect("delivery-queue connects");
    assert!(delivery.queue.pull(1, Duration::from_secs(1)).await.unwrap().is_empty(), "a forged envelope was queued");

    // The mailstore may publish changes but not queue mail; smtp-ingress may not listen to
    // mailbox changes.
    let (mailstore, mut errors) = raw_client(&server, "mailstore").await;
    mailstore.publish("queue.envelope", Bytes::new()).await.unwrap();
    mailstore.flush().await.unwrap();
    let said = refusal(&mut errors).await;
    assert!(said.contains("permissions violation") && said.contains("queue.envelope"), "{said}");
    let (ingress, mut errors) = raw_client(&server, "smtp-ingress").await;
    let _subscription = ingress.subscribe("events.>").await.unwrap();
    ingress.flush().await.unwrap();
    let said = refusal(&mut errors).await;
    assert!(said.contains("permissions violation") && said.contains("events.>"), "{said}");
}
