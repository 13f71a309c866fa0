//! A DNS server for tests: answers A, MX and TXT queries from records a test sets, over UDP on
//! loopback, so SPF, DKIM, DMARC and MX routing run against real DNS without the network. A
//! name without any record is NXDOMAIN; a known name without the type asked for has no answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use tokio::net::UdpSocket;

type Zone = HashMap<(String, RecordType), Vec<RData>>;

pub struct Dns {
    pub address: SocketAddr,
    zone: Arc<Mutex<Zone>>,
}

impl Dns {
    pub async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let address = socket.local_addr().unwrap();
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let answers = zone.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((length, client)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = Message::from_vec(&buffer[..length]) else { continue };
                let response = answer(&query, &answers.lock().unwrap());
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, client).await;
                }
            }
        });
        Dns { address, zone }
    }

    pub fn txt(&self, name: &str, text: &str) {
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(vec![text.to_string()])));
    }

    pub fn a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RecordType::A, RData::A(A(ip)));
    }

    /// An MX record; `exchange` "." is a null MX (RFC 7505).
    pub fn mx(&self, name: &str, preference: u16, exchange: &str) {
        let exchange = Name::from_ascii(exchange).expect("an exchange name");
        self.add(name, RecordType::MX, RData::MX(MX::new(preference, exchange)));
    }

    fn add(&self, name: &str, kind: RecordType, data: RData) {
        let key = (name.trim_end_matches('.').to_lowercase(), kind);
        self.zone.lock().unwrap().entry(key).or_default().push(data);
    }

    /// A resolver configuration that asks this server only.
    pub fn resolver_config(&self) -> (ResolverConfig, ResolverOpts) {
        let mut connection = ConnectionConfig::udp();
        connection.port = self.address.port();
        let server = NameServerConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), true, vec![connection]);
        (ResolverConfig::from_parts(None, vec![], vec![server]), ResolverOpts::default())
    }
}

fn answer(query: &Message, zone: &Zone) -> Message {
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let mut found_name = false;
    for question in &query.queries {
        response.add_query(question.clone());
        let name = question.name().to_string().trim_end_matches('.').to_lowercase();
        found_name |= zone.keys().any(|(known, _)| *known == name);
        for data in zone.get(&(name, question.query_type())).into_iter().flatten() {
            response.add_answer(Record::from_rdata(question.name().clone(), 60, data.clone()));
        }
    }
    if !found_name {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response
}
