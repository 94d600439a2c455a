//! The domain: what cri-resmgr needs, as pure functions over typed values. Nothing here does I/O (no client, no
//! files, no clock); the adapters ([`crate::webhook`], [`crate::controller`], [`crate::render`]) read the inputs,
//! call in here, and write the results.
//!
//! A Shoot's `configs.default` travels: [`validation`] (decoded and judged, with field paths) → [`configs`]
//! (merged over the operator's base configs) → [`desired`] (the one plan per shoot) → [`shoot_resources`] (the
//! typed objects for the shoot) — and for the nodes → [`node`] (the OperatingSystemConfig additions).

pub mod configs;
pub mod desired;
pub mod images;
pub mod node;
pub mod osc;
pub mod shoot_resources;
pub mod validation;
