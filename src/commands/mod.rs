//! The commands that compose the adapters into running processes: `admission` (garden) and `controller` (seed).
//! They are the only modules that wire webhook handlers and the reconciler together.

pub mod admission;
pub mod controller;
