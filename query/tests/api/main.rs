//! Integration tests of the query API against the real PostgreSQL, Redis and Kafka of the local
//! stack (one test binary: one link on a 2-core machine).

mod auth;
mod common;
mod drones;
mod flights;
mod live;
