//! One IMAP connection: the state machine of RFC 9051 §3 (not authenticated, authenticated,
//! selected, logout), one file per command or command family.
//!
//! - [`io`] — reading commands and literals, writing responses, the STARTTLS upgrade.
//! - `starttls` — STARTTLS.
//! - `auth` — LOGIN, AUTHENTICATE and UNAUTHENTICATE.
//! - `enable` — ENABLE.
//! - `compress` — COMPRESS DEFLATE; `deflate`, the compression under [`io`].
//! - `create` — CREATE, DELETE and RENAME.
//! - `subscribe` — SUBSCRIBE and UNSUBSCRIBE.
//! - `list` — LIST and LSUB, with LIST-EXTENDED and LIST-STATUS.
//! - `namespace` — NAMESPACE.
//! - `status` — STATUS.
//! - `quota` — GETQUOTA and GETQUOTAROOT.
//! - `select` — SELECT and EXAMINE.
//! - `selection` — the selected mailbox: its snapshot, sequence numbers and flags.
//! - `recent` — which messages are \Recent in the session (IMAP4rev1).
//! - `expunge` — EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT: leaving messages or the mailbox.
//! - `fetch` — FETCH and UID FETCH.
//! - `store` — STORE and UID STORE.
//! - `copy` — COPY and MOVE, with their UID forms.
//! - `append` — APPEND.
//! - `search` — SEARCH and UID SEARCH.
//! - `sort` — SORT and THREAD, with their UID forms.
//! - `idle` — IDLE.
//! - `updates` — changes from elsewhere told to the client: EXISTS, EXPUNGE, FETCH (FLAGS).
//! - `messages` — messages read from the mailstore: metadata, bodies, UID ranges.
//!
//! A session holds only what belongs to its connection: who logged in and what they enabled.
//! All mail state is asked of the mailstore, so any frontend can serve any client.

mod append;
mod auth;
mod compress;
mod context;
mod copy;
mod create;
mod deflate;
mod enable;
mod expunge;
mod fetch;
mod idle;
pub mod io;
mod list;
mod messages;
mod metadata;
mod namespace;
mod notify;
mod progress;
mod quota;
mod recent;
mod search;
mod select;
mod selection;
mod sort;
mod starttls;
mod status;
mod store;
mod subscribe;
mod updates;
mod url;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_runtime::tls::Connection;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use crate::capability;
use crate::credentials::Account;
use crate::extended_syntax::{Extension, ListOptions, SearchExtra, SearchReturn};
use crate::mailbox_name;
use crate::response::{self, Status};
use crate::services::Services;
use io::{End, Input, Io, Request};

const INBOX: &str = "INBOX";

/// RFC 9051 §3.
enum State {
    NotAuthenticated,
    Authenticated(Account),
}

/// Whether the session goes on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Whether `body` is a command of the selected state (RFC 9051 §6.4).
fn needs_selection(body: &CommandBody<'_>) -> bool {
    matches!(
        body,
        CommandBody::Check
            | CommandBody::Expunge
            | CommandBody::ExpungeUid { .. }
            | CommandBody::Search { .. }
            | CommandBody::Sort { .. }
            | CommandBody::Thread { .. }
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Copy { .. }
            | CommandBody::Move { .. }
            | CommandBody::Idle
    )
}

/// Runs one IMAP session on `connection` until the client logs out or leaves, or the server
/// shuts down.
pub async fn serve<S>(connection: Connection<S>, client_ip: IpAddr, services: Arc<Services>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (max_literal, login_timeout) = (services.settings.max_literal, services.settings.login_timeout);
    let mut session = Session {
        io: Io::new(connection, max_literal),
        services,
        client_ip,
        state: State::NotAuthenticated,
        login_deadline: tokio::time::Instant::now() + login_timeout,
        auth_failures: 0,
        errors: 0,
        utf8: false,
        rev2: false,
        condstore: false,
        qresync: false,
        answered: None,
        saved_result_set: false,
        selected: None,
        notify: None,
        expunges_allowed: false,
    };
    session.run().await;
}

struct Session<S> {
    io: Io<S>,
    services: Arc<Services>,
    client_ip: IpAddr,
    state: State,
    /// When a client that has not logged in is disconnected: the whole login, however slowly
    /// its octets arrive, must be done by then (a slow-drip client holds a connection no longer).
    login_deadline: tokio::time::Instant,
    auth_failures: u32,
    /// Unreadable commands so far.
    errors: u32,
    /// Mailbox names in UTF-8 rather than modified UTF-7 (ENABLE UTF8=ACCEPT or IMAP4rev2).
    utf8: bool,
    /// ENABLE IMAP4rev2: responses follow RFC 9051 rather than RFC 3501.
    rev2: bool,
    /// CONDSTORE is in use (RFC 7162 §3.1): every FETCH response about flags carries the
    /// message's MODSEQ. Turned on by ENABLE CONDSTORE or the first command that uses it.
    condstore: bool,
    /// ENABLE QRESYNC (RFC 7162 §3.2): SELECT may resynchronise from a MODSEQ, and expunged
    /// messages are reported as VANISHED UIDs rather than EXPUNGE sequence numbers.
    qresync: bool,
    /// The selected mailbox (the selected state of RFC 9051 §3.3), after login only.
    selected: Option<selection::Selection>,
    /// What NOTIFY asked for (RFC 5465), once it has.
    notify: Option<notify::Notify>,
    /// Whether the command being answered may carry EXPUNGE responses (RFC 9051 §7.5.1).
    expunges_allowed: bool,
    /// The tagged answer the command being answered got, once it has one.
    answered: Option<Status>,
    /// The message set of the command being answered is `$` (SEARCHRES, RFC 5182).
    saved_result_set: bool,
}

/// The next command, by `deadline` when there is one (before login), with `idle_timeout` for
/// each read.
async fn read_command<S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: &mut io::Io<S>,
    deadline: Option<tokio::time::Instant>,
    idle_timeout: Duration,
) -> Result<Input<Request>, End> {
    match deadline {
        Some(deadline) => {
            let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::timeout_at(deadline, io.read_command(timeout)).await.unwrap_or(Err(End::Timeout))
        }
        None => io.read_command(idle_timeout).await,
    }
}

/// The RETURN options and the stand-in search keys of a SEARCH, SORT or THREAD.
fn search_extension(extension: &Option<Extension>) -> (Option<&SearchReturn>, &[SearchExtra]) {
    match extension {
        Some(Extension::Search { returns, keys }) => (returns.as_ref(), keys.as_slice()),
        _ => (None, &[]),
    }
}

/// Counts a command by its tagged answer and records how long it took; IDLE only counts, as it
/// lasts as long as the client likes.
fn count_command(name: &'static str, answered: Option<Status>, took: Duration) {
    let status = answered.map_or("none", Status::as_str);
    metrics::counter!("kubemail_imap_commands_total", "command" => name, "status" => status).increment(1);
    if name != "IDLE" {
        metrics::histogram!("kubemail_imap_command_duration_seconds", "command" => name).record(took.as_secs_f64());
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) {
        let greeting = format!("{} IMAP4rev2 server ready", self.services.settings.hostname);
        let capabilities = format!("CAPABILITY {}", self.capabilities());
        self.io.write(response::status(None, Status::Ok, Some(&capabilities), &greeting).as_bytes());
        let shutdown = self.services.shutdown.clone();
        loop {
            let (deadline, idle_timeout) = self.read_limits();
            let input = tokio::select! {
                input = read_command(&mut self.io, deadline, idle_timeout) => input,
                () = shutdown.wait() => {
                    self.bye(None, "Server shutting down, please reconnect");
                    break;
                }
                // With NOTIFY, changes are told while the client sends nothing (RFC 5465 §3.1).
                notification = notify::next_notification(&mut self.notify, &mut self.selected), if self.notify.is_some() => {
                    self.notified(notification).await;
                    continue;
                }
            };
            let flow = match input {
                Ok(Input::Message(request)) => {
                    let (name, started) = (request.name(), Instant::now());
                    self.answered = None;
                    let flow = self.command(request).await;
                    count_command(name, self.answered, started.elapsed());
                    // Search results kept up to date are told after the command (RFC 5267 §4.3.2).
                    self.update_contexts().await;
                    flow
                }
                Ok(Input::Malformed { tag, reason }) => {
                    self.respond(tag.as_ref(), Status::Bad, None, reason);
                    self.count_error()
                }
                Ok(Input::LiteralRefused { tag, length }) => {
                    let text = format!("A literal of {length} octets is over the limit");
                    self.respond(tag.as_ref(), Status::No, Some("TOOBIG"), &text);
                    self.count_error()
                }
                Err(End::LiteralTooBig(tag)) => {
                    self.respond(tag.as_ref(), Status::Bad, Some("TOOBIG"), "Literal over the limit");
                    self.bye(None, "Closing the connection: the literal cannot be skipped");
                    Flow::Close
                }
                Err(End::Timeout) => {
                    self.bye(None, "Autologout: idle for too long");
                    Flow::Close
                }
                Err(End::Closed | End::Io(_)) => Flow::Close,
            };
            if flow == Flow::Close {
                break;
            }
        }
        if let State::Authenticated(account) = &self.state {
            tracing::debug!(client = %self.client_ip, account = %account.address, "session ended");
        }
        self.io.close().await;
    }

    async fn command(&mut self, request: Request) -> Flow {
        let Request { command: Command { tag, body }, extension, saved_result } = request;
        self.saved_result_set = saved_result;
        let name = body.name();
        self.expunges_allowed = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Sort { uid: false, .. }
                | CommandBody::Thread { uid: false, .. }
        );
        if extension == Some(Extension::Unauthenticate) {
            return self.unauthenticate(&tag);
        }
        if let Some(Extension::CancelUpdate(tags)) = &extension {
            self.cancel_update(&tag, tags);
            return Flow::Continue;
        }
        if let Some(Extension::Notify(set)) = extension {
            match self.state {
                State::Authenticated(_) => self.notify_command(&tag, set).await,
                State::NotAuthenticated => self.respond(Some(&tag), Status::Bad, None, "Log in before NOTIFY"),
            }
            return Flow::Continue;
        }
        match (&self.state, body) {
            (_, CommandBody::Capability) => {
                let line = format!("* CAPABILITY {}\r\n", self.capabilities());
                self.io.write(line.as_bytes());
                self.ok(&tag, "CAPABILITY completed");
            }
            (_, CommandBody::Noop) => self.ok(&tag, "NOOP completed"),
            (_, CommandBody::Logout) => {
                // Only the tagged OK may follow the BYE (RFC 9051 §6.1.3): changes not yet
                // reported are of no use to a client that is leaving, so the mailbox is left
                // without them.
                self.selected = None;
                self.bye(None, "Logging out");
                self.ok(&tag, "LOGOUT completed");
                return Flow::Close;
            }
            (_, CommandBody::Id { .. }) => {
                let line = format!("* ID (\"name\" \"kubemail\" \"version\" \"{}\")\r\n", env!("CARGO_PKG_VERSION"));
                self.io.write(line.as_bytes());
                self.ok(&tag, "ID completed");
            }
            (State::NotAuthenticated, CommandBody::StartTLS) => return self.starttls(&tag).await,
            (State::NotAuthenticated, CommandBody::Login { username, password }) => {
                return self.login(&tag, username.as_ref(), password.declassify().as_ref()).await;
            }
            (State::NotAuthenticated, CommandBody::Authenticate { mechanism, initial_response }) => {
                let initial = initial_response.map(|response| response.declassify().to_vec());
                return self.authenticate(&tag, mechanism, initial).await;
            }
            (State::Authenticated(_), CommandBody::StartTLS | CommandBody::Login { .. })
            | (State::Authenticated(_), CommandBody::Authenticate { .. }) => {
                self.respond(Some(&tag), Status::Bad, None, "Already logged in");
            }
            (State::NotAuthenticated, _) => {
                self.respond(Some(&tag), Status::Bad, None, &format!("Log in before {name}"));
            }
            (State::Authenticated(_), CommandBody::Enable { capabilities }) => self.enable(&tag, capabilities.as_ref()),
            (State::Authenticated(_), CommandBody::Compress { .. }) => return self.compress(&tag).await,
            (State::Authenticated(_), CommandBody::Create { mailbox }) => {
                let special_use = match &extension {
                    Some(Extension::CreateUse(attributes)) => Some(attributes.as_slice()),
                    _ => None,
                };
                self.create(&tag, &mailbox, special_use).await;
            }
            (State::Authenticated(_), CommandBody::Delete { mailbox }) => self.delete(&tag, &mailbox).await,
            (State::Authenticated(_), CommandBody::Rename { from, to }) => self.rename(&tag, &from, &to).await,
            (State::Authenticated(_), CommandBody::Subscribe { mailbox }) => {
                self.subscribe(&tag, &mailbox, true).await;
            }
            (State::Authenticated(_), CommandBody::Unsubscribe { mailbox }) => {
                self.subscribe(&tag, &mailbox, false).await;
            }
            (State::Authenticated(_), CommandBody::List { reference, mailbox_wildcard }) => {
                let options = match extension {
                    Some(Extension::List(options)) => options,
                    _ => ListOptions::default(),
                };
                self.list(&tag, &reference, &mailbox_wildcard, false, &options).await;
            }
            (State::Authenticated(_), CommandBody::Lsub { reference, mailbox_wildcard }) => {
                self.list(&tag, &reference, &mailbox_wildcard, true, &ListOptions::default()).await;
            }
            (State::Authenticated(_), CommandBody::Namespace) => self.namespace(&tag),
            (State::Authenticated(_), CommandBody::GetMetadata { options, mailbox, entries }) => {
                self.get_metadata(&tag, &options, &mailbox, &entries).await;
            }
            (State::Authenticated(_), CommandBody::SetMetadata { mailbox, entry_values }) => {
                self.set_metadata(&tag, &mailbox, &entry_values).await;
            }
            (State::Authenticated(_), CommandBody::GetQuota { root }) => self.get_quota(&tag, &root).await,
            (State::Authenticated(_), CommandBody::GetQuotaRoot { mailbox }) => {
                self.get_quota_root(&tag, &mailbox).await;
            }
            (State::Authenticated(_), CommandBody::SetQuota { .. }) => {
                self.respond(Some(&tag), Status::No, Some("NOPERM"), "Quotas are set by the administrator");
            }
            (State::Authenticated(_), CommandBody::Status { mailbox, item_names }) => {
                let (items, mailbox_id) = match &extension {
                    Some(Extension::StatusMailboxId { placeholder: true }) => (&[][..], true),
                    Some(Extension::StatusMailboxId { placeholder: false }) => (item_names.as_ref(), true),
                    _ => (item_names.as_ref(), false),
                };
                self.status(&tag, &mailbox, items, mailbox_id).await;
            }
            (State::Authenticated(_), CommandBody::Select { mailbox, parameters }) => {
                self.select(&tag, &mailbox, &parameters, false).await;
            }
            (State::Authenticated(_), CommandBody::Examine { mailbox, parameters }) => {
                self.select(&tag, &mailbox, &parameters, true).await;
            }
            (State::Authenticated(_), CommandBody::Close) => self.close(&tag).await,
            (State::Authenticated(_), CommandBody::Unselect) => self.unselect(&tag),
            (State::Authenticated(_), CommandBody::Check) if self.selected.is_some() => {
                self.ok(&tag, "CHECK completed")
            }
            (State::Authenticated(_), CommandBody::Fetch { sequence_set, macro_or_item_names, uid, modifiers })
                if self.selected.is_some() =>
            {
                let extra = match &extension {
                    Some(Extension::Fetch { extra, placeholder }) => (extra.as_slice(), *placeholder),
                    _ => (&[][..], false),
                };
                self.fetch(&tag, &sequence_set, &macro_or_item_names, uid, &modifiers, extra).await;
            }
            (State::Authenticated(_), CommandBody::Store { sequence_set, kind, response, flags, uid, modifiers })
                if self.selected.is_some() =>
            {
                let change = store::Change { kind, response, flags: &flags, modifiers: &modifiers };
                self.store(&tag, &sequence_set, change, uid).await;
            }
            (State::Authenticated(_), CommandBody::Copy { sequence_set, mailbox, uid }) if self.selected.is_some() => {
                self.copy(&tag, &sequence_set, &mailbox, uid, false).await;
            }
            (State::Authenticated(_), CommandBody::Move { sequence_set, mailbox, uid }) if self.selected.is_some() => {
                self.copy(&tag, &sequence_set, &mailbox, uid, true).await;
            }
            (State::Authenticated(_), CommandBody::Append { mailbox, flags, date, message }) => {
                let more = match &extension {
                    Some(Extension::Append(more)) => Some(more),
                    _ => None,
                };
                self.append(&tag, &mailbox, &flags, date.as_ref(), &message, more).await;
            }
            (State::Authenticated(_), CommandBody::Idle) if self.selected.is_some() => return self.idle(&tag).await,
            (State::Authenticated(_), CommandBody::Search { charset, criteria, uid }) if self.selected.is_some() => {
                let (returns, keys) = search_extension(&extension);
                self.search(&tag, charset.as_ref(), criteria.as_ref(), uid, returns, keys).await;
            }
            (State::Authenticated(_), CommandBody::Sort { sort_criteria, charset, search_criteria, uid })
                if self.selected.is_some() =>
            {
                let (returns, keys) = search_extension(&extension);
                let search = (search_criteria.as_ref(), keys);
                self.sort(&tag, sort_criteria.as_ref(), &charset, search, uid, returns).await;
            }
            (State::Authenticated(_), CommandBody::Thread { algorithm, charset, search_criteria, uid })
                if self.selected.is_some() =>
            {
                let (_, keys) = search_extension(&extension);
                self.thread(&tag, &algorithm, &charset, (search_criteria.as_ref(), keys), uid).await;
            }
            (State::Authenticated(_), CommandBody::Expunge) if self.selected.is_some() => {
                self.expunge(&tag, None).await;
            }
            (State::Authenticated(_), CommandBody::ExpungeUid { sequence_set }) if self.selected.is_some() => {
                self.expunge(&tag, Some(&sequence_set)).await;
            }
            (State::Authenticated(_), body) if self.selected.is_none() && needs_selection(&body) => {
                self.respond(Some(&tag), Status::Bad, None, &format!("Select a mailbox before {name}"));
            }
            (State::Authenticated(_), _) => {
                self.respond(Some(&tag), Status::Bad, None, &format!("{name} is not supported"));
            }
        }
        Flow::Continue
    }

    /// One more unreadable command; too many end the connection, so a client sending garbage
    /// does not hold it forever.
    fn count_error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.services.settings.max_errors {
            self.bye(None, "Too many invalid commands");
            return Flow::Close;
        }
        Flow::Continue
    }

    /// The capabilities of the session as it is now.
    fn capabilities(&self) -> String {
        match self.state {
            State::NotAuthenticated => capability::before_login(
                self.io.is_tls(),
                self.services.tls_acceptor().is_some(),
                self.plaintext_auth_allowed(),
            ),
            State::Authenticated(_) => capability::after_login(),
        }
    }

    /// The logged-in account; only called in the authenticated states.
    fn account_id(&self) -> i64 {
        match &self.state {
            State::Authenticated(account) => account.id,
            State::NotAuthenticated => unreachable!("mailbox commands are dispatched after login only"),
        }
    }

    /// How long the next command may take: before login, all of it by the login deadline;
    /// after it, the autologout time (RFC 9051 §5.4: at least 30 minutes) for each read.
    fn read_limits(&self) -> (Option<tokio::time::Instant>, Duration) {
        match self.state {
            State::NotAuthenticated => (Some(self.login_deadline), self.services.settings.idle_timeout),
            State::Authenticated(_) => (None, self.services.settings.idle_timeout),
        }
    }

    /// Whether passwords may be sent without TLS on this connection.
    fn plaintext_auth_allowed(&self) -> bool {
        self.services.settings.allow_plaintext_auth && self.client_ip.is_loopback()
    }

    /// The UTF-8 name of `mailbox`, or `None` after answering that it is not one.
    fn name(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Option<String> {
        match mailbox {
            Mailbox::Inbox => Some(INBOX.to_string()),
            Mailbox::Other(other) => self.decode_name(tag, other.inner().as_ref()),
        }
    }

    fn decode_name(&mut self, tag: &Tag<'_>, wire: &[u8]) -> Option<String> {
        match mailbox_name::from_wire(wire, self.utf8) {
            Ok(name) => Some(name),
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, reason);
                None
            }
        }
    }

    /// `name` as the client reads mailbox names, quoted (or a literal).
    fn quoted_name(&self, name: &str) -> String {
        response::string(&mailbox_name::to_wire(name, self.utf8), self.utf8)
    }

    /// Answers a refused mailstore call with the RFC 5530 code that says why.
    fn mailstore_refused(&mut self, tag: &Tag<'_>, status: &tonic::Status) {
        self.refused(Some(tag), status);
    }

    /// [`Session::mailstore_refused`], or untagged without a tag (what a notification could
    /// not read).
    fn refused(&mut self, tag: Option<&Tag<'_>>, status: &tonic::Status) {
        let code = match status.code() {
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::NotFound => "NONEXISTENT",
            Code::InvalidArgument | Code::FailedPrecondition => "CANNOT",
            Code::ResourceExhausted => "OVERQUOTA",
            Code::PermissionDenied => "NOPERM",
            _ => {
                tracing::warn!(client = %self.client_ip, %status, "mailstore call failed");
                self.respond(tag, Status::No, Some("UNAVAILABLE"), "Try again later");
                return;
            }
        };
        let text = status.message().lines().next().unwrap_or("Refused").to_string();
        self.respond(tag, Status::No, Some(code), &text);
    }

    fn ok(&mut self, tag: &Tag<'_>, text: &str) {
        self.respond(Some(tag), Status::Ok, None, text);
    }

    fn bye(&mut self, code: Option<&str>, text: &str) {
        self.respond(None, Status::Bye, code, text);
    }

    /// Writes a status response; a command's tagged response comes after what changed in the
    /// selected mailbox meanwhile.
    fn respond(&mut self, tag: Option<&Tag<'_>>, status: Status, code: Option<&str>, text: &str) {
        if tag.is_some() {
            self.report_changes();
            if self.condstore
                && let Some(line) = self.selected.as_ref().and_then(selection::Selection::held_back_highest_modseq)
            {
                self.io.write(line.as_bytes());
            }
            self.answered = Some(status);
        }
        self.io.write(response::status(tag, status, code, text).as_bytes());
    }
}
