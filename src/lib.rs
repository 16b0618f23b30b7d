//! lethe: a self-hosted server for handing a secret from one person to another exactly once.

pub mod clock;
pub mod reaper;
pub mod store;
