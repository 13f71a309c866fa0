//! What the operator's tests share: the real Kubernetes control plane `scripts/test` starts and
//! what they do with it ([`cluster`]), a platform set up on it as a user would ([`platform`]),
//! and the second cluster, with a node, that runs kubemail's image as pods ([`node`]).

// Each test binary uses its own part of this.
#![allow(dead_code)]

pub mod cluster;
pub mod node;
pub mod platform;
