//! Integration tests against a real etcd + kube-apiserver started on loopback (one per test binary, see
//! `support`). Each test works in its own namespace.

mod admission;
mod apply;
mod bad_input;
mod cert_rotation;
mod cert_secret;
mod charts;
mod control_plane;
mod controller;
mod faults;
mod gardener_types;
mod managed_resource;
mod osc_webhook;
mod stores;
mod support;
