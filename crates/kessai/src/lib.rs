//! The composition root (the design document's `di/`): reads settings,
//! builds the adapters, hands them to the use cases and serves the API.

pub mod demo;
pub mod startup;
pub mod telemetry;
