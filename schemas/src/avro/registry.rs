//! The registry: every known version of each schema, by fingerprint, and apache-avro's schema
//! resolution for messages written with a version other than the current one.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::schema::Schema;
use apache_avro::types::Value;

use super::fingerprint::{fingerprint, schema_full_name};
use super::{
    hex, malformed, DecodeError, FLIGHT_EVENT_NAME, FLIGHT_EVENT_SCHEMA, TELEMETRY_NAME, TELEMETRY_PACKET_NAME,
    TELEMETRY_PACKET_SCHEMA, TELEMETRY_RECORD_SCHEMA,
};

/// Superseded schema versions, embedded by `build.rs`.
pub(super) mod history {
    include!(concat!(env!("OUT_DIR"), "/history.rs"));
}

/// apache-avro's allocation limit; see [`Family::load`].
const MAX_AVRO_ALLOCATION: usize = 1 << 20;

/// Every known version of one schema.
pub(super) struct Family {
    full_name: &'static str,
    /// The current schema: what every message is resolved to.
    pub(super) reader: Schema,
    /// Fingerprint of the current schema.
    pub(super) current: [u8; 8],
    /// Every known writer schema by fingerprint, the current one included.
    pub(super) writers: HashMap<[u8; 8], Schema>,
}

pub(super) static TELEMETRY: LazyLock<Family> =
    LazyLock::new(|| Family::load(TELEMETRY_NAME, TELEMETRY_RECORD_SCHEMA, history::HISTORY));
pub(super) static FLIGHT_EVENT: LazyLock<Family> =
    LazyLock::new(|| Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_SCHEMA, history::HISTORY));
pub(super) static TELEMETRY_PACKET: LazyLock<Family> =
    LazyLock::new(|| Family::load(TELEMETRY_PACKET_NAME, TELEMETRY_PACKET_SCHEMA, history::HISTORY));

impl Family {
    /// Builds the family named `full_name` from its current schema and the files of `history`
    /// that carry the same full name. The schemas are embedded in the binary, so a schema that
    /// does not parse is a build defect: this panics, and the tests exercise it.
    pub(super) fn load(full_name: &'static str, current_json: &str, history: &[(&str, &str)]) -> Family {
        // apache-avro reserves as many entries as a map or array block claims, up to this global
        // limit (512 MiB by default), so one corrupt message could abort the process. No
        // Flightline message comes near Kafka's default 1 MiB message size; only this crate uses
        // apache-avro, and it sets the limit before decoding anything.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let reader = Schema::parse_str(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} does not parse: {error}"));
        let current = fingerprint(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} has no canonical form: {error}"));
        let mut writers = HashMap::new();
        writers.insert(current, reader.clone());
        for (file, text) in history {
            let name = schema_full_name(text).unwrap_or_else(|error| panic!("history schema {file}: {error}"));
            if name != full_name {
                continue;
            }
            let schema =
                Schema::parse_str(text).unwrap_or_else(|error| panic!("history schema {file} does not parse: {error}"));
            let version = fingerprint(text)
                .unwrap_or_else(|error| panic!("history schema {file} has no canonical form: {error}"));
            writers.insert(version, schema);
        }
        Family { full_name, reader, current, writers }
    }

    /// Decodes `datum`, written with the schema of `version`, and resolves it to the reader schema.
    pub(super) fn resolve(&self, version: [u8; 8], datum: &[u8]) -> Result<Value, DecodeError> {
        let Some(writer) = self.writers.get(&version) else {
            return Err(self.not_mine(version));
        };
        let mut rest = datum;
        // What apache_avro::from_avro_datum(writer, rest, Some(reader)) does, in two steps so a
        // corrupt datum and an incompatible schema are told apart.
        let value =
            apache_avro::from_avro_datum(writer, &mut rest, None).map_err(|error| malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        value
            .resolve(&self.reader)
            .map_err(|error| DecodeError::Incompatible { fingerprint: hex(&version), reason: error.to_string() })
    }

    fn not_mine(&self, version: [u8; 8]) -> DecodeError {
        for other in [&*TELEMETRY, &*FLIGHT_EVENT, &*TELEMETRY_PACKET] {
            if other.full_name != self.full_name && other.writers.contains_key(&version) {
                return DecodeError::WrongSchema { expected: self.full_name, found: other.full_name };
            }
        }
        DecodeError::UnknownSchema { fingerprint: hex(&version) }
    }
}
