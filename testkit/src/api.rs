//! A client of the public HTTP API (CONTRACT.md §2), and the contract's error body.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// The HTTP API at `url`: a test's own ingest or query server, or a whole `flightline all`
/// (which serves both on one address).
#[derive(Clone)]
pub struct Api {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub http: reqwest::Client,
}

/// A signed-up, logged-in user.
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl Api {
    pub fn new(url: impl Into<String>) -> Self {
        Api { url: url.into(), http: reqwest::Client::new() }
    }

    /// The absolute URL of `path` (`/v1/…`).
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `POST /v1/auth/signup`.
    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.credentials("/v1/auth/signup", email, password).await
    }

    /// `POST /v1/auth/token`.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.credentials("/v1/auth/token", email, password).await
    }

    async fn credentials(&self, path: &str, email: &str, password: &str) -> Response {
        let body = json!({"email": email, "password": password});
        self.http.post(self.at(path)).json(&body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// A new user with a random email, and its token.
    pub async fn user(&self) -> User {
        let email = format!("pilot-{}@example.com", Uuid::new_v4().simple());
        let response = self.signup(&email, "password123").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
        let response = self.login(&email, "password123").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        User { id, email, token: body["access_token"].as_str().unwrap().to_owned() }
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http.get(self.at(path)).bearer_auth(token).send().await.expect("GET")
    }

    /// POST of a JSON body with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http.post(self.at(path)).bearer_auth(token).json(body).send().await.expect("POST")
    }

    /// Creates a drone of `user` through the API: (id, api key).
    pub async fn drone(&self, user: &User, name: &str) -> (Uuid, String) {
        let response = self.post("/v1/drones", &user.token, &json!({"name": name})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        (Uuid::parse_str(body["id"].as_str().unwrap()).unwrap(), body["api_key"].as_str().unwrap().to_owned())
    }

    /// `POST /v1/telemetry` of a JSON body as the drone of `api_key`.
    pub async fn post_telemetry(&self, api_key: &str, body: &Value) -> Response {
        self.http
            .post(self.at("/v1/telemetry"))
            .header("x-api-key", api_key)
            .json(body)
            .send()
            .await
            .expect("POST /v1/telemetry")
    }
}

/// Asserts the status and the contract's error body (`error`, a non-empty `message`, `details`);
/// returns the `error` code.
pub async fn assert_error(response: Response, status: StatusCode) -> String {
    let body = error_body(response, status).await;
    body["error"].as_str().expect("error code").to_owned()
}

/// Asserts the status, the contract's error body and its `error` code; returns the body.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = error_body(response, status).await;
    assert_eq!(body["error"], code, "{body}");
    body
}

async fn error_body(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(body["error"].is_string(), "error code missing: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "message missing: {body}");
    assert!(body["details"].is_array(), "details missing: {body}");
    body
}
