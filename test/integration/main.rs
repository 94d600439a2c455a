//! Integration tests against a real etcd + kube-apiserver started on loopback (one per test binary, see
//! `support`). Each test works in its own namespace.

mod control_plane;
mod gardener_types;
mod support;
