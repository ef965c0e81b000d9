//! One module per route group of CONTRACT.md §2.

pub mod auth;
pub mod dashboard;
pub mod drones;
pub mod flights;
pub mod live;
