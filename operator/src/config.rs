//! The operator's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;
use std::time::Duration;

use kubemail_runtime::config::parse_duration;
use kubemail_runtime::identity::IdentityFlags;

#[derive(Clone, Debug, clap::Parser)]
#[command(name = "operator", version, about = "kubemail operator: MailCluster, MailDomain and Mailbox reconciled")]
pub struct Config {
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = "KUBEMAIL_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,
    /// Reach every MailCluster's mailstore Admin API at this gRPC address instead of its
    /// Service (for an operator run outside the cluster).
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
    /// Reconcile the resources of these namespaces only (comma-separated); without it, those
    /// of every namespace. Then it needs rights in those namespaces only (the chart's
    /// `operator.watchNamespaces` gives it Roles there and no ClusterRole): for an operator
    /// per team, or several operators (tests) on one cluster.
    #[arg(long, env = "KUBEMAIL_OPERATOR_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// How often each Mailbox's usage is read from the mailstore; its status is written only
    /// when the usage changed.
    #[arg(long, env = "KUBEMAIL_OPERATOR_USAGE_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub usage_refresh: Duration,
    /// The operator's identity towards a mailstore given by --mailstore; in the cluster it
    /// uses the identity each MailCluster's reconcile keeps for it.
    #[command(flatten)]
    pub service_identity: IdentityFlags,
}
