//! The operator's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;

#[derive(Clone, Debug, clap::Parser)]
#[command(name = "operator", version, about = "kubemail operator: MailCluster, MailDomain and Mailbox reconciled")]
pub struct Config {
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = "KUBEMAIL_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,
    /// Reach every MailCluster's mailstore at this gRPC address instead of its Service (for an
    /// operator run outside the cluster).
    #[arg(long, env = "KUBEMAIL_OPERATOR_MAILSTORE")]
    pub mailstore: Option<String>,
    /// Take the leader lease before reconciling, so of several replicas exactly one acts.
    #[arg(long, env = "KUBEMAIL_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The Lease the replicas compete for.
    #[arg(long, env = "KUBEMAIL_OPERATOR_LEASE", default_value = "kubemail-operator")]
    pub lease_name: String,
    /// The Lease's namespace: the operator's own (the chart passes it); else the client's
    /// default namespace.
    #[arg(long, env = "KUBEMAIL_OPERATOR_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease and in Events: its pod name (the chart passes it).
    #[arg(long, env = "KUBEMAIL_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
}
