pub mod telemetry;
pub mod telemetry_ws;
