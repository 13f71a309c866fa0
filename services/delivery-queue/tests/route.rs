//! MX routing against a DNS server on loopback: preference order, implicit MX, null MX
//! (RFC 7505), a domain that does not exist, and overrides.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_resolver::Resolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use kubemail_delivery_queue::outbound::route::{Override, Route, Router, Target};
use kubemail_testkit::dns::Dns;

fn router(dns: &Dns, overrides: &[&str]) -> Router {
    let (config, options) = dns.resolver_config();
    let resolver =
        Resolver::builder_with_config(config, TokioRuntimeProvider::default()).with_options(options).build().unwrap();
    let overrides: Vec<Override> = overrides.iter().map(|o| o.parse().unwrap()).collect();
    Router::new(resolver, &overrides)
}

fn target(host: &str, port: u16) -> Target {
    Target { host: host.into(), port }
}

#[tokio::test]
async fn mx_hosts_come_in_preference_order_with_their_addresses() {
    let dns = Dns::start().await;
    dns.mx("mail.example", 20, "backup.mail.example.");
    dns.mx("mail.example", 10, "primary.mail.example.");
    dns.a("primary.mail.example", Ipv4Addr::new(127, 0, 0, 2));
    let router = router(&dns, &[]);
    let targets = router.targets("Mail.Example").await.unwrap();
    assert_eq!(targets, [target("primary.mail.example", 25), target("backup.mail.example", 25)]);
    let addresses = router.addresses(&targets[0]).await.unwrap();
    assert_eq!(addresses, ["127.0.0.2:25".parse::<SocketAddr>().unwrap()]);
    assert!(router.addresses(&targets[1]).await.is_err(), "no address record");
}

#[tokio::test]
async fn a_domain_without_mx_is_its_own_mx() {
    let dns = Dns::start().await;
    dns.a("implicit.example", Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(router(&dns, &[]).targets("implicit.example").await.unwrap(), [target("implicit.example", 25)]);
}

#[tokio::test]
async fn a_null_mx_or_a_missing_domain_fails_at_once() {
    let dns = Dns::start().await;
    dns.mx("nomail.example", 0, ".");
    let router = router(&dns, &[]);
    match router.targets("nomail.example").await {
        Err(Route::Failed(failure)) => assert_eq!(failure.status, "5.1.10"),
        other => panic!("null MX: {other:?}"),
    }
    match router.targets("nowhere.example").await {
        Err(Route::Failed(failure)) => assert_eq!(failure.status, "5.1.2"),
        other => panic!("NXDOMAIN: {other:?}"),
    }
}

#[tokio::test]
async fn an_override_goes_before_dns() {
    let dns = Dns::start().await;
    dns.mx("mail.example", 10, "primary.mail.example.");
    let router = router(&dns, &["mail.example=127.0.0.1:2525"]);
    assert!(router.overridden("MAIL.example."));
    let targets = router.targets("mail.example").await.unwrap();
    assert_eq!(targets, [target("127.0.0.1", 2525)]);
    assert_eq!(router.addresses(&targets[0]).await.unwrap(), ["127.0.0.1:2525".parse::<SocketAddr>().unwrap()]);
}
