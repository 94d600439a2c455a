//! The admission handlers, thin adapters over [`crate::domain`]:
//!
//! - [`shoot`]: validates and defaults the Shoot's providerConfig (garden).
//! - [`osc`]: mutates the worker pools' OperatingSystemConfigs (seed).
//!
//! The HTTPS server, the AdmissionReview plumbing and the registration are in [`crate::runtime`].

pub mod osc;
pub mod shoot;
