//! What the operator's tests share: the real Kubernetes control plane `scripts/test` starts and
//! what they do with it ([`cluster`]), and a platform set up on it as a user would
//! ([`platform`]).

// Each test binary uses its own part of this.
#![allow(dead_code)]

pub mod cluster;
pub mod platform;
