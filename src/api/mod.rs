//! The surfaces, one module each. Each owns its wire types and its error dialect and calls only the
//! domain layer; no surface calls another.

pub mod ots_v1;
pub mod ops;
pub mod web;
