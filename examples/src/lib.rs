//! Shared code of the examples: where connection strings come from, and the tutorial's two
//! halves (the device that reboots, the service that reboots it), so that `getstarted`, the
//! standalone apps and the end-to-end tests run the same code.

#![deny(missing_docs)]

pub mod settings;
pub mod tutorial;
