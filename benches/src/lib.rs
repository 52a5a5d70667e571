//! Support for the end-to-end benchmark (`src/bin/e2e.rs`): the emulator as a child process,
//! latency statistics, and process measurements from `/proc`.

#![deny(missing_docs)]

pub mod emulator;
pub mod floor;
pub mod measure;
pub mod soak;
pub mod stats;
