//! A remote MTA for tests: an SMTP server on loopback that records what it is sent and answers
//! as the test tells it to — accepting, deferring (4xx) or refusing (5xx) recipients and data —
//! with STARTTLS and AUTH PLAIN when asked for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How the server answers; tests may change it while it runs.
#[derive(Clone, Debug)]
pub struct Answers {
    /// The reply to every RCPT, unless `refused` names the address.
    pub rcpt: String,
    /// Addresses refused with their reply (e.g. `550 5.1.1 No such user`).
    pub refused: Vec<(String, String)>,
    /// The reply to the end of the data.
    pub data: String,
}

impl Default for Answers {
    fn default() -> Self {
        Answers { rcpt: "250 2.1.5 OK".into(), refused: Vec::new(), data: "250 2.0.0 queued".into() }
    }
}

/// One message as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// Dot-unstuffed, without the terminating line.
    pub data: Vec<u8>,
    pub tls: bool,
    /// The user that logged in, if any.
    pub user: Option<String>,
}

/// What the server offers.
#[derive(Clone, Default)]
pub struct Options {
    /// The address to listen on, at a free port; 127.0.0.1 when not given.
    pub listen: Option<std::net::IpAddr>,
    /// A certificate and key (PEM) to offer STARTTLS with.
    pub tls: Option<(String, String)>,
    /// A user name and password that must log in (AUTH PLAIN) before MAIL.
    pub login: Option<(String, String)>,
    /// Offers STARTTLS and accepts the command, then answers the handshake with text, as a
    /// misconfigured MTA does.
    pub broken_starttls: bool,
    /// Replies sent in the clear right behind `220` to STARTTLS, as a man in the middle
    /// injects them (CVE-2011-0411): a client must not read them once TLS is up.
    pub inject_after_starttls: Option<String>,
}

/// The running server; it stops when the test's runtime ends.
pub struct Mta {
    pub address: SocketAddr,
    pub answers: Arc<Mutex<Answers>>,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// QUIT commands received so far.
    pub quits: Arc<AtomicUsize>,
}

impl Mta {
    pub async fn start(options: Options) -> Mta {
        let ip = options.listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mta = Mta {
            address,
            answers: Arc::new(Mutex::new(Answers::default())),
            received: Arc::new(Mutex::new(Vec::new())),
            connections: Arc::new(AtomicUsize::new(0)),
            quits: Arc::new(AtomicUsize::new(0)),
        };
        let acceptor = options.tls.as_ref().map(|(certificate, key)| {
            let chain = CertificateDer::pem_slice_iter(certificate.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
            TlsAcceptor::from(Arc::new(config))
        });
        let shared = Shared {
            answers: mta.answers.clone(),
            received: mta.received.clone(),
            acceptor,
            login: options.login.clone(),
            broken_starttls: options.broken_starttls,
            inject_after_starttls: options.inject_after_starttls,
            quits: mta.quits.clone(),
        };
        let connections = mta.connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                tokio::spawn(async move { shared.serve(stream).await });
            }
        });
        mta
    }

    pub fn set_answers(&self, answers: Answers) {
        *self.answers.lock().unwrap() = answers;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Shared {
    answers: Arc<Mutex<Answers>>,
    received: Arc<Mutex<Vec<Received>>>,
    acceptor: Option<TlsAcceptor>,
    login: Option<(String, String)>,
    broken_starttls: bool,
    inject_after_starttls: Option<String>,
    quits: Arc<AtomicUsize>,
}

/// The state of one session.
#[derive(Default)]
struct Session {
    tls: bool,
    user: Option<String>,
    mail_from: Option<String>,
    recipients: Vec<String>,
}

/// What a command asks the connection to do next.
enum Next {
    Continue,
    StartTls,
    Quit,
}

impl Shared {
    async fn serve(&self, stream: TcpStream) {
        let mut session = Session::default();
        let mut plain = BufReader::new(stream);
        let _ = plain.get_mut().write_all(b"220 mta.test ESMTP\r\n").await;
        if let Some(Next::StartTls) = self.converse(&mut plain, &mut session).await {
            if self.broken_starttls {
                let _ = plain.get_mut().write_all(b"this is not a TLS handshake\r\n").await;
                return;
            }
            let Some(acceptor) = &self.acceptor else { return };
            let Ok(tls) = acceptor.accept(plain.into_inner()).await else { return };
            let mut session = Session { tls: true, ..Session::default() };
            self.converse(&mut BufReader::new(tls), &mut session).await;
        }
    }

    fn offers_starttls(&self) -> bool {
        self.acceptor.is_some() || self.broken_starttls
    }

    /// Commands until QUIT, STARTTLS or the end of the connection.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut BufReader<S>,
        session: &mut Session,
    ) -> Option<Next> {
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let (reply, next) = self.command(line.trim_end(), stream, session).await?;
            stream.get_mut().write_all(format!("{reply}\r\n").as_bytes()).await.ok()?;
            match next {
                Next::Continue => {}
                other => return Some(other),
            }
        }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        line: &str,
        stream: &mut BufReader<S>,
        session: &mut Session,
    ) -> Option<(String, Next)> {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let answers = self.answers.lock().unwrap().clone();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["mta.test", "PIPELINING", "8BITMIME", "SIZE 10000000", "ENHANCEDSTATUSCODES"];
                if self.offers_starttls() && !session.tls {
                    lines.push("STARTTLS");
                }
                if self.login.is_some() {
                    lines.push("AUTH PLAIN");
                }
                let last = lines.len() - 1;
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, text)| format!("250{}{text}", if i == last { ' ' } else { '-' }))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            }
            "HELO" | "NOOP" => "250 2.0.0 OK".into(),
            "STARTTLS" if self.offers_starttls() && !session.tls => {
                let reply = match &self.inject_after_starttls {
                    Some(injected) => format!("220 2.0.0 go ahead\r\n{}", injected.trim_end()),
                    None => "220 2.0.0 go ahead".into(),
                };
                return Some((reply, Next::StartTls));
            }
            "AUTH" => match (&self.login, line.split(' ').nth(2)) {
                (Some((user, password)), Some(token)) if line.split(' ').nth(1) == Some("PLAIN") => {
                    let expected = BASE64.encode(format!("\0{user}\0{password}"));
                    if token == expected {
                        session.user = Some(user.clone());
                        "235 2.7.0 Authenticated".into()
                    } else {
                        "535 5.7.8 Bad credentials".into()
                    }
                }
                _ => "504 5.5.4 Only AUTH PLAIN with an initial response".into(),
            },
            "MAIL" if self.login.is_some() && session.user.is_none() => "530 5.7.0 Authentication required".into(),
            "MAIL" => {
                session.mail_from = Some(path(line));
                session.recipients.clear();
                "250 2.1.0 OK".into()
            }
            "RCPT" if session.mail_from.is_none() => "503 5.5.1 MAIL first".into(),
            "RCPT" => {
                let address = path(line);
                match answers.refused.iter().find(|(refused, _)| *refused == address) {
                    Some((_, reply)) => reply.clone(),
                    None => {
                        if answers.rcpt.starts_with('2') {
                            session.recipients.push(address);
                        }
                        answers.rcpt.clone()
                    }
                }
            }
            "DATA" if session.recipients.is_empty() => "554 5.5.1 No valid recipients".into(),
            "DATA" => {
                stream.get_mut().write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.ok()?;
                let data = read_data(stream).await?;
                if answers.data.starts_with('2') {
                    self.received.lock().unwrap().push(Received {
                        mail_from: session.mail_from.clone().unwrap_or_default(),
                        recipients: session.recipients.clone(),
                        data,
                        tls: session.tls,
                        user: session.user.clone(),
                    });
                }
                session.mail_from = None;
                session.recipients.clear();
                answers.data.clone()
            }
            "RSET" => {
                session.mail_from = None;
                session.recipients.clear();
                "250 2.0.0 OK".into()
            }
            "QUIT" => {
                self.quits.fetch_add(1, Ordering::SeqCst);
                return Some(("221 2.0.0 Bye".into(), Next::Quit));
            }
            _ => "502 5.5.2 Not implemented".into(),
        };
        Some((reply, Next::Continue))
    }
}

/// The address between `<` and `>` of a MAIL or RCPT line.
fn path(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

/// Data lines up to the lone `.`, unstuffed.
async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if stream.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(data);
        }
        let unstuffed = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
    }
}
