//! The Shoot's `spec.extensions[type=cri-resmgr-extension].providerConfig`.
