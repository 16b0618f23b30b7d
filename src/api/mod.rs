//! The surfaces, one module each. Each owns its wire types and its error dialect and calls only the
//! domain layer; no surface calls another.

pub mod ops;
pub mod ots_v1;
pub mod web;
