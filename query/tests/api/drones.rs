//! Drones: create, list, get, rotate, and tenant isolation of every drone- and flight-scoped
//! route.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{assert_error, spawn_app};

fn is_contract_ts(value: &Value) -> bool {
    let text = value.as_str().unwrap_or("");
    // YYYY-MM-DDTHH:MM:SS.ffffffZ
    text.len() == 27
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

#[tokio::test]
async fn create_list_get_and_rotate() {
    let app = spawn_app().await;
    let user = app.user().await;

    let response = app.post("/v1/drones", &user.token, &json!({"name": "  quad-1 "})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "quad-1");
    assert_eq!(created["owner_id"], user.id.to_string());
    assert!(is_contract_ts(&created["created_at"]), "{}", created["created_at"]);
    assert!(is_contract_ts(&created["updated_at"]));
    let first_key = created["api_key"].as_str().unwrap().to_owned();
    assert!(first_key.starts_with("fl_"));
    let first_id = created["id"].as_str().unwrap().to_owned();
    // Only the hash is stored.
    let hash: Vec<u8> = sqlx::query_scalar("SELECT api_key_hash FROM drones WHERE id = $1")
        .bind(Uuid::parse_str(&first_id).unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(hash, credentials::hash(&first_key));

    let (second_id, second_key) = app.drone(&user, "quad-2").await;
    let resolver = credentials::KeyResolver::new(app.pool.clone(), std::time::Duration::ZERO);
    assert_eq!(resolver.resolve(&second_key).await.unwrap(), Some(second_id));

    let listed: Value = app.get("/v1/drones", &user.token).await.json().await.unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["quad-1", "quad-2"]);
    assert!(listed[0].get("api_key").is_none(), "the key is shown only once");

    let response = app.get(&format!("/v1/drones/{first_id}"), &user.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got["id"], first_id);
    assert!(got.get("api_key").is_none());

    let response = app.post(&format!("/v1/drones/{second_id}/api-key"), &user.token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    let new_key = rotated["api_key"].as_str().unwrap();
    assert_eq!(resolver.resolve(new_key).await.unwrap(), Some(second_id));
    assert_eq!(resolver.resolve(&second_key).await.unwrap(), None, "the old key no longer resolves");
    // The new key opens the drone's live state; a key that no longer exists does not.
    let live = app
        .http
        .get(app.at(&format!("/v1/drones/{second_id}/live")))
        .header("x-api-key", new_key)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    app.cleanup().await;
}

#[tokio::test]
async fn create_rejects_bad_names_and_anonymous_callers() {
    let app = spawn_app().await;
    let user = app.user().await;
    for body in
        [json!({"name": ""}), json!({"name": "   "}), json!({"name": "x".repeat(101)}), json!({}), json!({"name": 3})]
    {
        assert_error(app.post("/v1/drones", &user.token, &body).await, StatusCode::BAD_REQUEST).await;
    }
    let anonymous = app.http.post(app.at("/v1/drones")).json(&json!({"name": "a"})).send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM drones").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn every_drone_and_flight_route_hides_other_owners_resources() {
    let app = spawn_app().await;
    let owner = app.user().await;
    let intruder = app.user().await;
    let (drone, key) = app.drone(&owner, "owned").await;
    let (intruder_drone, intruder_key) = app.drone(&intruder, "intruder's").await;
    let flight = app.insert_flight(drone, 1_777_636_800_000_000, 1_777_636_860_000_000, None).await;

    let gets = [
        format!("/v1/drones/{drone}"),
        format!("/v1/drones/{drone}/live"),
        format!("/v1/drones/{drone}/live/stream"),
        format!("/v1/drones/{drone}/flights"),
        format!("/v1/flights/{flight}"),
        format!("/v1/flights/{flight}?include=telemetry"),
        format!("/v1/flights/{flight}/telemetry.csv"),
    ];
    for path in &gets {
        // The owner gets through (control), the intruder gets the same 404 as for nothing at all.
        let allowed = app.get(path, &owner.token).await;
        assert_eq!(allowed.status(), StatusCode::OK, "owner on {path}");
        drop(allowed);
        assert_eq!(
            assert_error(app.get(path, &intruder.token).await, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
        let missing = path
            .replace(&drone.to_string(), &Uuid::new_v4().to_string())
            .replace(&flight.to_string(), &Uuid::new_v4().to_string());
        assert_error(app.get(&missing, &owner.token).await, StatusCode::NOT_FOUND).await;
    }
    let stream = app
        .http
        .get(app.at(&format!("/v1/drones/{drone}/live/stream?access_token={}", intruder.token)))
        .send()
        .await
        .unwrap();
    assert_error(stream, StatusCode::NOT_FOUND).await;

    let posts = [format!("/v1/drones/{drone}/api-key"), format!("/v1/flights/{flight}/recompute")];
    for path in &posts {
        assert_error(app.post(path, &intruder.token, &json!({})).await, StatusCode::NOT_FOUND).await;
    }
    // The rotation attempt changed nothing: the owner's key still resolves.
    let resolver = credentials::KeyResolver::new(app.pool.clone(), std::time::Duration::ZERO);
    assert_eq!(resolver.resolve(&key).await.unwrap(), Some(drone));

    // A drone key opens only its own drone's live state.
    let live = app
        .http
        .get(app.at(&format!("/v1/drones/{drone}/live")))
        .header("x-api-key", &intruder_key)
        .send()
        .await
        .unwrap();
    assert_error(live, StatusCode::NOT_FOUND).await;
    let own = app
        .http
        .get(app.at(&format!("/v1/drones/{intruder_drone}/live")))
        .header("x-api-key", &intruder_key)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);

    // The intruder's list holds only the intruder's drone.
    let listed: Value = app.get("/v1/drones", &intruder.token).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], intruder_drone.to_string());

    // Ids that are not UUIDs name nothing.
    assert_error(app.get("/v1/drones/not-a-uuid", &owner.token).await, StatusCode::NOT_FOUND).await;
    assert_error(app.get("/v1/flights/42", &owner.token).await, StatusCode::NOT_FOUND).await;
    app.cleanup().await;
}

#[tokio::test]
async fn create_rejects_a_name_with_u0000() {
    // Found by hostile-input testing (tests/api_fuzz): PostgreSQL refused the insert, a 500.
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app.post("/v1/drones", &user.token, &json!({"name": "quad\u{0}7"})).await;
    assert_eq!(assert_error(response, StatusCode::BAD_REQUEST).await, "invalid_request");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM drones").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0);
    app.cleanup().await;
}
