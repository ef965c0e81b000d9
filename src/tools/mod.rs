//! The client-side tools of the `flightline` binary: they talk to a deployment through its
//! public API, as a drone or a fleet would.
//!
//! - [`send`]: a recorded packet file through the ingest API;
//! - [`simulate`]: a fleet of simulated drones (the `sim` crate's airframes) in real time;
//! - [`client`]: the HTTP client both use, with the retry rule of CONTRACT.md §2 (429 and 503
//!   are retried after `Retry-After`, so no packet is lost);
//! - [`bridge`]: MAVLink vehicles (UDP, serial, a recorded `.tlog`) through the ingest API,
//!   over the same client, with an on-disk buffer for when the API is unreachable;
//! - [`replay`]: `flightline replay`, the command line of `processors::replay` (it reads the
//!   log and writes the database itself, beside the running pipeline).

pub mod bridge;
pub mod client;
pub mod replay;
pub mod send;
pub mod simulate;
