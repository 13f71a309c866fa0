//! The standalone smtp-ingress service (one Deployment in a MailCluster).

fn main() {}
