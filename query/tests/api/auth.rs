//! Signup, login, and what is done with bad tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_error, spawn_app, spawn_app_with, Options, JWT_SECRET};

#[tokio::test]
async fn signup_then_login_gives_a_working_bearer_token() {
    let app = spawn_app().await;
    let response = app.signup("Pilot@Example.com", "password123").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "Pilot@Example.com");
    assert!(user["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&app.pool).await.unwrap();
    assert!(stored.starts_with("$argon2id$"), "password stored as {stored}");

    // Login is case-insensitive on the email.
    let response = app.login("pilot@example.COM", "password123").await;
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["expires_in"], 600);
    let access_token = token["access_token"].as_str().unwrap();
    let response = app.get("/v1/drones", access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn signup_rejects_taken_emails_case_insensitively() {
    let app = spawn_app().await;
    assert_eq!(app.signup("a@example.com", "password123").await.status(), StatusCode::CREATED);
    let code = assert_error(app.signup("A@EXAMPLE.com", "another-password").await, StatusCode::CONFLICT).await;
    assert_eq!(code, "email_taken");
    app.cleanup().await;
}

#[tokio::test]
async fn signup_rejects_invalid_input() {
    let app = spawn_app().await;
    for (email, password) in
        [("not-an-email", "password123"), ("a@b", "password123"), ("", "password123"), ("a@example.com", "short")]
    {
        let code = assert_error(app.signup(email, password).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(code, "invalid_request", "{email} / {password}");
    }
    // Malformed bodies: missing field, unknown field, not JSON.
    for body in
        [json!({"email": "a@example.com"}), json!({"email": "a@example.com", "password": "password123", "admin": true})]
    {
        let response = app.http.post(app.at("/v1/auth/signup")).json(&body).send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    let response = app
        .http
        .post(app.at("/v1/auth/signup"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.pool).await.unwrap();
    assert_eq!(users, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn signup_can_be_disabled() {
    let mut options = Options::default();
    options.settings.signup_enabled = false;
    let app = spawn_app_with(options).await;
    let code = assert_error(app.signup("a@example.com", "password123").await, StatusCode::FORBIDDEN).await;
    assert_eq!(code, "signup_disabled");
    app.cleanup().await;
}

#[tokio::test]
async fn login_fails_alike_for_unknown_email_and_wrong_password() {
    let app = spawn_app().await;
    let user = app.user().await;
    let wrong_password = app.login(&user.email, "wrong-password").await;
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    let wrong_password: Value = wrong_password.json().await.unwrap();
    let unknown = app.login("nobody@example.com", "password123").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong_password, unknown);
    assert_eq!(unknown["error"], "invalid_credentials");
    app.cleanup().await;
}

#[tokio::test]
async fn password_guessing_from_one_address_gets_429_even_for_the_right_password() {
    let mut options = Options::default();
    options.settings.login_failure_burst = 3;
    options.settings.login_failures_per_s = 0.01;
    let app = spawn_app_with(options).await;
    let user = app.user().await;
    for _ in 0..3 {
        assert_eq!(app.login(&user.email, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    for password in ["another-guess", "password123"] {
        let response = app.login(&user.email, password).await;
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1, "{retry_after}");
        assert_eq!(assert_error(response, StatusCode::TOO_MANY_REQUESTS).await, "rate_limited");
    }
    app.cleanup().await;
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn tampered_expired_and_unsigned_tokens_are_rejected() {
    let app = spawn_app().await;
    let user = app.user().await;
    let sub = user.id.to_string();
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());

    // Control: a token we sign like the server does is accepted.
    let good =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": sub, "exp": now() + 60}), &key).unwrap();
    assert_eq!(app.get("/v1/drones", &good).await.status(), StatusCode::OK);

    let expired =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": sub, "exp": now() - 5}), &key).unwrap();
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": now() + 60}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let no_exp = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": sub}), &key).unwrap();
    let hs512 =
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &json!({"sub": sub, "exp": now() + 60}), &key).unwrap();
    // The payload swapped for another user's id, signature kept.
    let parts: Vec<&str> = user.token.split('.').collect();
    let other_payload =
        base64url(json!({"sub": uuid::Uuid::new_v4().to_string(), "exp": now() + 60}).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    let unsigned_header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(json!({"sub": sub, "exp": now() + 60}).to_string().as_bytes());
    let alg_none = format!("{unsigned_header}.{payload}.");
    let alg_none_with_signature = format!("{unsigned_header}.{payload}.{}", parts[2]);

    for (name, token) in [
        ("expired", expired),
        ("wrong key", wrong_key),
        ("no exp", no_exp),
        ("hs512", hs512),
        ("tampered", tampered),
        ("alg none", alg_none),
        ("alg none with signature", alg_none_with_signature),
        ("garbage", "garbage".to_owned()),
    ] {
        let response = app.get("/v1/drones", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name} token accepted");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(assert_error(response, StatusCode::UNAUTHORIZED).await, "unauthorized");
    }
    // No token, and a token in the query string of a non-stream route.
    assert_error(app.http.get(app.at("/v1/drones")).send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let in_query = app.http.get(app.at(&format!("/v1/drones?access_token={}", user.token))).send().await.unwrap();
    assert_error(in_query, StatusCode::UNAUTHORIZED).await;
    app.cleanup().await;
}

#[tokio::test]
async fn login_with_u0000_in_the_email_is_an_unknown_email_not_a_500() {
    // Found by hostile-input testing (tests/api_fuzz): PostgreSQL cannot compare text holding
    // U+0000, and the lookup failed with a 500.
    let app = spawn_app().await;
    let user = app.user().await;
    let unknown: Value = app.login("nobody@example.com", "password123").await.json().await.unwrap();
    for email in [format!("{}\u{0}", user.email), "\u{0}".to_owned()] {
        let response = app.login(&email, "password123").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{email:?}");
        assert_eq!(response.json::<Value>().await.unwrap(), unknown, "{email:?}");
    }
    app.cleanup().await;
}
