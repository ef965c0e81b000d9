//! The OpenAPI 3.1 document of the ingest routes; the binary merges it with the query role's and
//! serves `/openapi.json`. The packet schema here documents CONTRACT.md §1; the rules themselves
//! live in `schemas` (this is documentation, not validation).

#![allow(dead_code)] // The types below exist only to be described.

use std::collections::BTreeMap;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{telemetry, telemetry_ws};

#[derive(OpenApi)]
#[openapi(
    info(title = "Flightline ingest API", description = "Telemetry in: HTTP batches and WebSocket streams (CONTRACT.md §1–2)."),
    paths(telemetry::post, telemetry_ws::upgrade),
    components(schemas(PacketDoc, TsDoc, GpsDoc, Ingested, ErrorDoc, FieldErrorDoc)),
    modifiers(&ApiKeyScheme),
    tags((name = "ingest", description = "drones send telemetry; acknowledged only once it is in Kafka")),
)]
struct IngestApi;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The OpenAPI 3.1 document of every route [`crate::router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    IngestApi::openapi()
}

/// A telemetry packet (CONTRACT.md §1). Unknown keys are rejected.
#[derive(ToSchema)]
#[schema(as = TelemetryPacket)]
#[serde(deny_unknown_fields)]
pub(crate) struct PacketDoc {
    /// RFC 3339 timestamp (any offset) or integer epoch milliseconds; strictly increasing per
    /// drone; at most 60 s ahead of the server clock.
    #[schema(example = "2026-05-01T12:00:00.020Z")]
    ts: TsDoc,
    /// 0.0–1.0.
    #[schema(minimum = 0.0, maximum = 1.0)]
    throttle: f64,
    /// Volts, finite, 0–100.
    #[schema(minimum = 0.0, maximum = 100.0)]
    voltage: Option<f64>,
    /// Amperes, finite, -50–1000 (negative = charging or regeneration).
    #[schema(minimum = -50.0, maximum = 1000.0)]
    current: Option<f64>,
    /// mAh drawn so far, ≥ 0.
    #[schema(minimum = 0)]
    mah_drawn: Option<i64>,
    /// -200–1023, as sent by the link.
    #[schema(minimum = -200, maximum = 1023)]
    rssi: Option<i32>,
    /// [x, y, z] metres, local ENU frame (z up).
    #[schema(min_items = 3, max_items = 3)]
    position: Option<[f64; 3]>,
    gps: Option<GpsDoc>,
    /// [vx, vy, vz] m/s, same frame as position.
    #[schema(min_items = 3, max_items = 3)]
    velocity: Option<[f64; 3]>,
    /// [roll, pitch, yaw] degrees.
    #[schema(min_items = 3, max_items = 3)]
    attitude: Option<[f64; 3]>,
    /// Flat object of string / number / boolean values; ≤ 32 keys, ≤ 4 KiB as compact JSON.
    #[schema(value_type = Option<Object>)]
    extra: Option<BTreeMap<String, String>>,
}

/// A packet's `ts`: RFC 3339 text (any offset), or integer epoch milliseconds.
#[derive(ToSchema)]
#[schema(as = Timestamp)]
#[serde(untagged)]
pub(crate) enum TsDoc {
    /// e.g. `2026-05-01T12:00:00.020Z` or `2026-05-01T14:00:00.020+02:00`.
    #[schema(format = DateTime)]
    Rfc3339(String),
    /// Milliseconds since 1970-01-01T00:00:00Z, ≥ 0.
    EpochMillis(i64),
}

/// A WGS-84 position.
#[derive(ToSchema)]
#[schema(as = Gps)]
pub(crate) struct GpsDoc {
    /// Degrees, -90–90.
    #[schema(minimum = -90.0, maximum = 90.0)]
    lat: f64,
    /// Degrees, -180–180.
    #[schema(minimum = -180.0, maximum = 180.0)]
    lon: f64,
    /// Metres above mean sea level.
    alt_m: f64,
}

/// The answer to an acknowledged batch.
#[derive(ToSchema)]
pub(crate) struct Ingested {
    /// Packets now in Kafka.
    ingested: usize,
}

/// The error body of every 4xx/5xx.
#[derive(ToSchema)]
#[schema(as = IngestError)]
pub(crate) struct ErrorDoc {
    /// Machine code: `invalid_json`, `invalid_body`, `invalid_packets`, `unauthorized`,
    /// `too_many_packets`, `body_too_large`, `unsupported_media_type`,
    /// `unsupported_content_encoding`, `rate_limited`, `too_many_auth_failures`, `unavailable`.
    error: String,
    /// Human-readable explanation.
    message: String,
    /// For `invalid_packets`, every problem; else empty.
    details: Vec<FieldErrorDoc>,
}

/// One problem with one field of one packet.
#[derive(ToSchema)]
#[schema(as = PacketFieldError)]
pub(crate) struct FieldErrorDoc {
    /// Position of the packet in the request.
    index: usize,
    /// JSON path in the packet, e.g. `gps.lat`, `position[2]`.
    field: String,
    /// e.g. `must be between 0 and 1`.
    reason: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_the_ingest_routes() {
        let document = serde_json::to_value(super::openapi()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        assert!(paths["/v1/telemetry"]["post"].is_object());
        assert!(paths["/v1/telemetry/ws"]["get"].is_object());
        let responses = paths["/v1/telemetry"]["post"]["responses"].as_object().unwrap();
        for status in ["201", "400", "401", "413", "415", "429", "503"] {
            assert!(responses.contains_key(status), "{status} missing");
        }
        assert!(document["components"]["schemas"]["TelemetryPacket"].is_object());
    }
}
