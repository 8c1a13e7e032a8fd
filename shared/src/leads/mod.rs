//! Leads: what a customer asked for, how it is accepted and how it is delivered to amoCRM.

pub mod accept;
pub mod deliver;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod intake;
pub mod model;
pub mod phone;
pub mod render;

pub use model::*;
