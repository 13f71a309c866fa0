//! The listeners over real loopback sockets: the PROXY protocol (v1 and v2) from trusted peers
//! only, and the per-address connection cap and rate.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{Client, Fixture};
use kubemail_runtime::limits::{ConnectionLimits, ConnectionTracker};
use kubemail_runtime::proxy::Cidr;
use kubemail_smtp_ingress::server::{self, Admission, Listeners};
use tokio::net::{TcpSocket, TcpStream};

/// Serves the fixture's sessions on loopback; returns the MX address.
async fn serve(f: &Fixture, limits: ConnectionLimits, trusted_proxies: Vec<Cidr>) -> SocketAddr {
    let any = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(any, any, None).await.unwrap();
    let smtp = listeners.smtp.local_addr().unwrap();
    let admission = Arc::new(Admission::new(ConnectionTracker::new(limits), trusted_proxies));
    tokio::spawn(server::serve(listeners, f.services.clone(), admission));
    smtp
}

const UNLIMITED: ConnectionLimits = ConnectionLimits { per_ip: 0, per_ip_per_minute: 0 };

async fn send_one(client: &mut Client<TcpStream>) {
    client.command("EHLO client.example", 250).await;
    client.command("MAIL FROM:<a@remote.example>", 250).await;
    client.command("RCPT TO:<alice@example.org>", 250).await;
    client.command("DATA", 354).await;
    client.send("Subject: proxied\r\n\r\nhi\r\n.\r\n").await;
    client.expect(250).await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_an_untrusted_peer_cannot() {
    let f = Fixture::start().await;
    let trusting = serve(&f, UNLIMITED, vec!["127.0.0.0/8".parse().unwrap()]).await;
    let mut client = Client::new(TcpStream::connect(trusting).await.unwrap());
    client.send("PROXY TCP4 203.0.113.9 192.0.2.1 51000 25\r\n").await;
    client.expect(220).await;
    send_one(&mut client).await;
    let queued = f.queued().await;
    assert_eq!(queued[0].0.client_ip, "203.0.113.9");
    assert!(queued[0].1.starts_with("Received: from client.example ([203.0.113.9])"), "{}", queued[0].1);

    let untrusting = serve(&f, UNLIMITED, Vec::new()).await;
    let mut client = Client::new(TcpStream::connect(untrusting).await.unwrap());
    client.expect(220).await;
    assert!(client.command("PROXY TCP4 203.0.113.9 192.0.2.1 51000 25", 500).await.starts_with("5.5.1"));
    send_one(&mut client).await;
    assert_eq!(f.queued().await[0].0.client_ip, "127.0.0.1");
}

/// A PROXY v2 header (PROXY command, TCP over IPv4) naming `client` as the source, as HAProxy
/// or a cloud load balancer sends it.
fn proxy_v2(client: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&client);
    header.extend_from_slice(&[192, 0, 2, 1]);
    header.extend_from_slice(&51000u16.to_be_bytes());
    header.extend_from_slice(&25u16.to_be_bytes());
    header
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_in_version_2_and_an_untrusted_peer_cannot() {
    let f = Fixture::start().await;
    let trusting = serve(&f, UNLIMITED, vec!["127.0.0.0/8".parse().unwrap()]).await;
    let mut client = Client::new(TcpStream::connect(trusting).await.unwrap());
    client.send_bytes(&proxy_v2([198, 51, 100, 7])).await;
    client.expect(220).await;
    send_one(&mut client).await;
    let queued = f.queued().await;
    assert_eq!(queued[0].0.client_ip, "198.51.100.7");
    assert!(queued[0].1.starts_with("Received: from client.example ([198.51.100.7])"), "{}", queued[0].1);

    // A load balancer's health check (LOCAL command) names nobody: the peer's own address counts.
    let mut client = Client::new(TcpStream::connect(trusting).await.unwrap());
    client.send_bytes(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00").await;
    client.expect(220).await;
    send_one(&mut client).await;
    assert_eq!(f.queued().await[0].0.client_ip, "127.0.0.1");

    // From an untrusted peer the header is SMTP input, and the QUIT the v2 signature carries
    // for such servers ends the session before any mail is taken.
    let untrusting = serve(&f, UNLIMITED, Vec::new()).await;
    let mut client = Client::new(TcpStream::connect(untrusting).await.unwrap());
    client.send_bytes(&proxy_v2([198, 51, 100, 7])).await;
    client.expect(220).await;
    let mut replies = Vec::new();
    while let Some(reply) = client.reply().await {
        replies.push(reply.code);
    }
    // Two empty lines and a NUL line are bad commands; then the QUIT.
    assert_eq!(replies, [500, 500, 500, 221]);
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn a_trusted_peer_without_a_valid_header_is_dropped() {
    let f = Fixture::start().await;
    let trusting = serve(&f, UNLIMITED, vec!["127.0.0.1".parse().unwrap()]).await;
    let mut client = Client::new(TcpStream::connect(trusting).await.unwrap());
    client.send("EHLO client.example\r\n").await;
    assert!(client.closed().await, "no greeting, no session");
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let f = Fixture::start().await;
    let smtp = serve(&f, ConnectionLimits { per_ip: 2, per_ip_per_minute: 0 }, Vec::new()).await;
    let mut first = Client::new(TcpStream::connect(smtp).await.unwrap());
    first.expect(220).await;
    let mut second = Client::new(TcpStream::connect(smtp).await.unwrap());
    second.expect(220).await;
    let mut third = Client::new(TcpStream::connect(smtp).await.unwrap());
    assert!(third.expect(421).await.starts_with("4.7.0"));
    assert!(third.closed().await);
    first.command("QUIT", 221).await;
    assert!(first.closed().await);
    // The slot is free again once the first session's task has ended, a moment after the
    // client saw the connection close.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut fourth = Client::new(TcpStream::connect(smtp).await.unwrap());
        let reply = fourth.reply().await.expect("a greeting or a refusal");
        if reply.code == 220 {
            break;
        }
        assert_eq!(reply.code, 421);
        assert!(tokio::time::Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    second.command("NOOP", 250).await;
}

#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let f = Fixture::start().await;
    let smtp = serve(&f, ConnectionLimits { per_ip: 0, per_ip_per_minute: 2 }, Vec::new()).await;
    // Each session ends before the next starts, so only the rate, not the cap, can refuse.
    for _ in 0..2 {
        let mut within = Client::new(TcpStream::connect(smtp).await.unwrap());
        within.expect(220).await;
        within.command("QUIT", 221).await;
        assert!(within.closed().await);
    }
    let mut over = Client::new(TcpStream::connect(smtp).await.unwrap());
    assert_eq!(over.expect(421).await, "4.7.0 Connecting too often, try again later");
    assert!(over.closed().await);

    // The budget is per client address: another one still gets in.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = Client::new(socket.connect(smtp).await.unwrap());
    other.expect(220).await;
    other.command("QUIT", 221).await;
}
