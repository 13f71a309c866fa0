//! The command line of `kubemail`. Every flag can also be set through the environment variable
//! named in its help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kubemail_delivery_queue::config::DeliveryFlags;
use kubemail_imap_frontend::config::SessionFlags;
use kubemail_runtime::config::parse_byte_size;
use kubemail_runtime::deployment::env;
use kubemail_runtime::identity::IdentityFlags;
use kubemail_smtp_ingress::config::LimitFlags;

/// The dev Admin API address; `kubemail admin` talks to it unless told otherwise.
pub const DEFAULT_ADMIN_API: &str = "http://127.0.0.1:7071";

#[derive(Debug, Parser)]
#[command(name = "kubemail", version, about = "A Kubernetes-native mail platform")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform in one process, on SQLite in --data-dir (for a laptop).
    Dev(Box<DevArgs>),
    /// Manage domains, mailboxes and aliases of a running mailstore.
    Admin(AdminArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory for the SQLite databases (mail, queue and spool); created if missing.
    #[arg(long, env = "KUBEMAIL_DATA_DIR", default_value = "./kubemail-data")]
    pub data_dir: PathBuf,
    /// The mailstore's gRPC API.
    #[arg(long, env = env::GRPC_LISTEN, default_value = "127.0.0.1:7070")]
    pub grpc_listen: SocketAddr,
    /// The Admin gRPC API, for `kubemail admin`.
    #[arg(long, env = env::ADMIN_GRPC_LISTEN, default_value = "127.0.0.1:7071")]
    pub admin_grpc_listen: SocketAddr,
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = env::HTTP_LISTEN, default_value = "127.0.0.1:9090")]
    pub http_listen: SocketAddr,
    /// SMTP for incoming mail (MX), served by smtp-ingress.
    #[arg(long, env = env::SMTP_LISTEN, default_value = "127.0.0.1:2525")]
    pub smtp_listen: SocketAddr,
    /// SMTP submission with STARTTLS (port 587 in production), served by smtp-ingress.
    #[arg(long, env = env::SUBMISSION_LISTEN, default_value = "127.0.0.1:2587")]
    pub submission_listen: SocketAddr,
    /// SMTP submission over implicit TLS (port 465 in production), served by smtp-ingress.
    #[arg(long, env = env::SUBMISSIONS_LISTEN, default_value = "127.0.0.1:2465")]
    pub submissions_listen: SocketAddr,
    /// IMAP with STARTTLS (port 143 in production), served by imap-frontend.
    #[arg(long, env = env::IMAP_LISTEN, default_value = "127.0.0.1:2143")]
    pub imap_listen: SocketAddr,
    /// IMAP over implicit TLS (port 993 in production), served by imap-frontend.
    #[arg(long, env = env::IMAPS_LISTEN, default_value = "127.0.0.1:2993")]
    pub imaps_listen: SocketAddr,
    /// POP3 with STLS (port 110 in production), served by imap-frontend.
    #[arg(long, env = env::POP3_LISTEN, default_value = "127.0.0.1:2110")]
    pub pop3_listen: SocketAddr,
    /// POP3 over implicit TLS (port 995 in production), served by imap-frontend.
    #[arg(long, env = env::POP3S_LISTEN, default_value = "127.0.0.1:2995")]
    pub pop3s_listen: SocketAddr,
    /// The name the SMTP server greets with and writes into Received headers.
    #[arg(long, env = env::HOSTNAME, default_value = "localhost")]
    pub hostname: String,
    /// Certificates: one subdirectory per domain with tls.crt and tls.key. Default: a
    /// self-signed certificate for the host name, made once in <data-dir>/tls.
    #[arg(long, env = env::TLS_DIR)]
    pub tls_dir: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    pub imap: SessionFlags,
    #[command(flatten)]
    pub delivery: DeliveryFlags,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The mailstore's Admin API address (its --admin-grpc-listen).
    #[arg(long, env = env::MAILSTORE, default_value = DEFAULT_ADMIN_API, global = true)]
    pub mailstore: String,
    /// The identity `kubemail admin` presents to a mailstore that requires one.
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Mail domains served by this platform.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Mailboxes (accounts): one per address that can log in and receive mail.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Extra addresses that deliver to a mailbox.
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Serve a domain (or change its settings).
    Add {
        /// The domain, e.g. example.org.
        name: String,
        /// Address that receives mail for unknown local parts.
        #[arg(long, default_value = "")]
        catch_all: String,
        /// Storage quota for new mailboxes, e.g. 1GiB (0 = unlimited).
        #[arg(long, default_value = "0", value_parser = parse_byte_size)]
        default_quota_storage: u64,
        /// Message-count quota for new mailboxes (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        default_quota_messages: u64,
    },
    /// List served domains.
    List,
    /// Stop serving a domain.
    Remove {
        name: String,
        /// Also delete its mailboxes, aliases and all their mail.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Create a mailbox, or set the password and quota of an existing one.
    Add {
        /// The address, e.g. alice@example.org; its domain must be served.
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Storage quota, e.g. 1GiB (default: the domain's; 0 = unlimited).
        #[arg(long, value_parser = parse_byte_size)]
        quota_storage: Option<u64>,
        /// Message-count quota (default: the domain's; 0 = unlimited).
        #[arg(long)]
        quota_messages: Option<u64>,
    },
    /// List mailboxes with their usage.
    List {
        /// Only this domain's mailboxes.
        #[arg(long, default_value = "")]
        domain: String,
    },
    /// Set a new password, read from standard input.
    Passwd {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a mailbox's quota.
    Quota {
        address: String,
        /// Storage quota, e.g. 1GiB (0 = unlimited).
        #[arg(long, value_parser = parse_byte_size)]
        storage: u64,
        /// Message-count quota (0 = unlimited).
        #[arg(long)]
        messages: u64,
    },
    /// Remove a mailbox: suspends it and keeps its mail, unless --purge.
    Remove {
        address: String,
        /// Delete the mailbox and all its mail for good.
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Make ALIAS deliver to the mailbox TARGET.
    Add { alias: String, target: String },
    /// Remove an alias.
    Remove { alias: String },
    /// List aliases.
    List {
        /// Only this domain's aliases.
        #[arg(long, default_value = "")]
        domain: String,
    },
}
