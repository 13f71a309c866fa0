//! The IMAP listener over real loopback sockets: the per-address connection cap and rate,
//! which a flood of connections from one address runs into while others are still served, and
//! which on the implicit-TLS port is said over TLS.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{Client, Fixture, HOSTNAME};
use kubemail_imap_frontend::server::{self, Admission, Listeners};
use kubemail_runtime::limits::{ConnectionLimits, ConnectionTracker};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Serves the fixture's sessions on loopback stand-ins of ports 143 and 993; returns their
/// addresses.
async fn serve_both(f: &Fixture, limits: ConnectionLimits) -> (SocketAddr, SocketAddr) {
    let imap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imaps = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addresses = (imap.local_addr().unwrap(), imaps.local_addr().unwrap());
    let admission = Arc::new(Admission::new(ConnectionTracker::new(limits), Vec::new()));
    tokio::spawn(server::serve(
        Listeners { imap, imaps: Some(imaps), pop3: None, pop3s: None },
        f.services.clone(),
        admission,
    ));
    addresses
}

/// The port 143 stand-in of [`serve_both`].
async fn serve(f: &Fixture, limits: ConnectionLimits) -> SocketAddr {
    serve_both(f, limits).await.0
}

async fn connect(address: SocketAddr) -> Client<TcpStream> {
    Client::new(TcpStream::connect(address).await.unwrap())
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_refused_beyond_the_cap() {
    let f = Fixture::start().await;
    let imap = serve(&f, ConnectionLimits { per_ip: 3, per_ip_per_minute: 0 }).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut client = connect(imap).await;
        assert!(client.line().await.unwrap().starts_with("* OK"));
        open.push(client);
    }
    for _ in 0..20 {
        let mut over = connect(imap).await;
        assert_eq!(
            over.rest_until_closed().await,
            ["* BYE [UNAVAILABLE] Too many connections from your address, try again later"]
        );
    }
    // The sessions inside the cap are untouched, and another address still gets in.
    open[0].command("a NOOP").await.expect_ok();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = Client::new(socket.connect(imap).await.unwrap());
    assert!(other.line().await.unwrap().starts_with("* OK"));
}

#[tokio::test]
async fn new_connections_from_one_address_are_rate_limited() {
    let f = Fixture::start().await;
    let imap = serve(&f, ConnectionLimits { per_ip: 0, per_ip_per_minute: 2 }).await;
    for _ in 0..2 {
        let mut within = connect(imap).await;
        assert!(within.line().await.unwrap().starts_with("* OK"));
        within.command("a LOGOUT").await.expect_ok();
    }
    let mut over = connect(imap).await;
    assert_eq!(over.rest_until_closed().await, ["* BYE [UNAVAILABLE] Connecting too often, try again later"]);
}

#[tokio::test]
async fn on_the_tls_port_a_refused_client_hears_why_over_tls() {
    let f = Fixture::start().await;
    let (_, imaps) = serve_both(&f, ConnectionLimits { per_ip: 1, per_ip_per_minute: 0 }).await;
    let tls = |stream| {
        let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
        f.tls_connector().connect(name, stream)
    };
    let mut within = Client::new(tls(TcpStream::connect(imaps).await.unwrap()).await.expect("TLS handshake"));
    assert!(within.line().await.unwrap().starts_with("* OK"));
    // Nothing is written before the handshake: the client reads the refusal as IMAP, in TLS.
    let over = tls(TcpStream::connect(imaps).await.unwrap()).await.expect("the refused client's handshake");
    let mut over = Client::new(over);
    assert_eq!(
        over.rest_until_closed().await,
        ["* BYE [UNAVAILABLE] Too many connections from your address, try again later"]
    );
    within.command("a NOOP").await.expect_ok();
}
