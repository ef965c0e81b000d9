pub mod health;
pub mod telemetry;
