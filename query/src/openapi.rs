//! The OpenAPI 3.1 document of the query routes, derived from the handlers' annotations. The
//! binary merges it with ingest's and serves `/openapi.json` and `/docs`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, drones, flights, live};

#[derive(OpenApi)]
#[openapi(
    info(title = "Flightline query API", description = "Users, drones, live state and flights (CONTRACT.md §2)."),
    paths(
        auth::signup, auth::token,
        drones::list, drones::create, drones::get, drones::rotate_key,
        live::latest, live::drone_stream, live::fleet_stream,
        flights::list, flights::detail, flights::csv, flights::recompute,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "sign up and obtain access tokens"),
        (name = "drones", description = "the caller's drones and their API keys"),
        (name = "live", description = "latest state and Server-Sent-Event streams"),
        (name = "flights", description = "flights, their metrics, raw data and recomputation"),
    )
)]
struct QueryApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("access_token"))),
        );
    }
}

/// The OpenAPI 3.1 document of every route [`crate::router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    QueryApi::openapi()
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_openapi_3_1_and_lists_every_route() {
        let document = serde_json::to_value(super::openapi()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/v1/auth/signup",
            "/v1/auth/token",
            "/v1/drones",
            "/v1/drones/{id}",
            "/v1/drones/{id}/api-key",
            "/v1/drones/{id}/live",
            "/v1/drones/{id}/live/stream",
            "/v1/live/stream",
            "/v1/drones/{id}/flights",
            "/v1/flights/{id}",
            "/v1/flights/{id}/telemetry.csv",
            "/v1/flights/{id}/recompute",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        let mut operation_ids: Vec<&str> = paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let operations = operation_ids.len();
        operation_ids.sort();
        operation_ids.dedup();
        assert_eq!(operation_ids.len(), operations, "operationIds must be unique");
        assert_eq!(operations, 13);
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for schema in
            ["Drone", "CreatedDrone", "FlightSummary", "FlightDetail", "FlightRule", "ErrorBody", "TokenResponse"]
        {
            assert!(schemas.contains_key(schema), "schema {schema} missing");
        }
        // CONTRACT.md §2: every flight names the rule it was cut with and its analytics version.
        let summary = &schemas["FlightSummary"];
        let required: Vec<&str> = summary["required"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(required.contains(&"rule"), "FlightSummary.rule is required: {required:?}");
        assert!(summary["properties"].get("analytics_version").is_some());
        let rule = &schemas["FlightRule"]["properties"];
        for member in ["throttle_threshold", "idle_s", "gap_s", "min_s"] {
            assert!(rule.get(member).is_some(), "FlightRule.{member} missing");
        }
    }
}
