//! The real parts behind a fuzzed session, started once per process: a mailstore on SQLite
//! served over gRPC (the testkit's, with its accounts), the local spool, queue and event bus,
//! and the current-thread runtime every input runs on, so runs do not interleave.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::tls::{self, PemPair};
use kubemail_testkit::mailstore::Mailstore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// How long a session may take to end after its client's input ran out. The sessions' own
/// timeouts are longer, so a session still running by then is waiting for nothing: a hang.
pub const SESSION_DEADLINE: Duration = Duration::from_secs(20);

pub struct Backend {
    pub runtime: Runtime,
    pub transport: LocalTransport,
    pub mailstore: Mailstore,
    pub tls: tls::ServerTls,
    _dir: tempfile::TempDir,
}

/// One protocol's session services over their backend, made once per process.
pub struct Harness<S> {
    pub backend: Backend,
    pub services: Arc<S>,
}

impl Backend {
    pub fn start(hostname: &str) -> Backend {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (transport, mailstore) = runtime.block_on(async {
            let transport =
                LocalTransport::open(&LocalConfig::new(dir.path().join("queue.db"))).await.expect("local transport");
            let mailstore = Mailstore::start(dir.path(), Arc::new(transport.events.clone())).await;
            (transport, mailstore)
        });
        let certificate: PemPair = tls::self_signed(&[hostname.to_string()]).expect("certificate");
        let tls = tls::ServerTls::from_pair(&certificate).expect("TLS config");
        Backend { runtime, transport, mailstore, tls, _dir: dir }
    }
}

/// Runs the session `serve` starts on one end of an in-memory connection that carries at most
/// `chunk` octets at a time (so the session's reads split where the input says), plays `input`
/// on the other end, closes it, and returns all the session wrote. Panics when the session does
/// not end by [`SESSION_DEADLINE`], and with the session's own panic.
pub async fn converse<F>(input: &[u8], chunk: usize, serve: impl FnOnce(tokio::io::DuplexStream) -> F) -> Vec<u8>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(chunk.max(1));
    let session = tokio::spawn(serve(server));
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // The server may close first (QUIT, too many errors); the rest of the input is moot.
        let _ = to_server.write_all(&input).await;
        let _ = to_server.shutdown().await;
    });
    let output = read_to_end(&mut from_server);
    let (output, session) = tokio::time::timeout(SESSION_DEADLINE, async { tokio::join!(output, session) })
        .await
        .unwrap_or_else(|_| panic!("the session did not end within {SESSION_DEADLINE:?} of its input"));
    if let Err(error) = session {
        std::panic::resume_unwind(error.into_panic());
    }
    writer.abort();
    output
}

async fn read_to_end(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut output = Vec::new();
    // An error is the session dropping its end, which ends the conversation like EOF does.
    let _ = stream.read_to_end(&mut output).await;
    output
}
