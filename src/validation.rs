//! Pure validation and defaulting of the providerConfig.
