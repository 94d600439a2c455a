//! The Extension controller: reconciles `Extension` objects of type `cri-resmgr-extension` in the seed.
//!
//! - [`status`]: the extension contract's pure logic (operation type, skip rule, event predicate, status patches,
//!   conditions, and the readiness check gardenlet applies), unit-tested without a cluster.
//!
//! The ManagedResource the controller ships into the shoot is handled by [`crate::managed_resource`].

pub mod status;
