//! Who is calling: JWTs for users (HS256, `alg` pinned, `exp` enforced, `sub` = user id), drone
//! API keys for the live endpoint, and argon2 password hashes.
//!
//! The extractors answer 401 with one message whatever was wrong (missing, malformed, tampered,
//! expired, `alg: none`), so a caller learns nothing about which check failed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::QueryState;

/// Signs and verifies access tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    inner: Arc<JwtInner>,
}

struct JwtInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id.
    sub: String,
    #[serde(default)]
    iat: u64,
    exp: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        // Only HS256 is accepted: a token naming any other algorithm (`none` included) is
        // rejected before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let inner = JwtInner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
        };
        Self { inner: Arc::new(inner) }
    }

    /// How long an issued token is valid.
    pub fn lifetime(&self) -> Duration {
        self.inner.lifetime
    }

    /// A signed access token for `user_id`, valid for [`Self::lifetime`].
    pub fn issue(&self, user_id: Uuid) -> Result<String> {
        let now = unix_now();
        let claims = Claims { sub: user_id.to_string(), iat: now, exp: now + self.inner.lifetime.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.inner.encoding).map_err(ApiError::internal)
    }

    /// The user a valid token was issued to.
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation).ok()?;
        Uuid::parse_str(&data.claims.sub).ok()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A user authenticated by `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
}

impl FromRequestParts<QueryState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &QueryState) -> Result<Self> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let user_id = state.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
        Ok(AuthUser { user_id })
    }
}

/// A user authenticated by the bearer header or, because browsers' `EventSource` cannot set
/// headers, by an `access_token` query parameter. Only the SSE routes accept the latter, since
/// query strings end up in logs.
#[derive(Debug, Clone, Copy)]
pub struct StreamUser {
    pub user_id: Uuid,
}

impl FromRequestParts<QueryState> for StreamUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &QueryState) -> Result<Self> {
        let from_query = || {
            parts.uri.query().and_then(|query| {
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| *name == "access_token")
                    .map(|(_, value)| value)
            })
        };
        let token = bearer(&parts.headers).or_else(from_query).ok_or(ApiError::Unauthorized)?;
        let user_id = state.jwt.verify(token).ok_or(ApiError::Unauthorized)?;
        Ok(StreamUser { user_id })
    }
}

/// The caller of `GET /v1/drones/{id}/live`: a drone by its `X-API-Key`, or a user by JWT.
#[derive(Debug, Clone, Copy)]
pub enum LiveCaller {
    Drone(Uuid),
    User(Uuid),
}

impl FromRequestParts<QueryState> for LiveCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &QueryState) -> Result<Self> {
        if let Some(key) = parts.headers.get("x-api-key") {
            let key = key.to_str().map_err(|_| ApiError::Unauthorized)?;
            let drone = state.keys.resolve(key).await?.ok_or(ApiError::Unauthorized)?;
            return Ok(LiveCaller::Drone(drone));
        }
        let user = AuthUser::from_request_parts(parts, state).await?;
        Ok(LiveCaller::User(user.user_id))
    }
}

/// An argon2id hash (PHC string, default parameters) of `password`, computed off the runtime.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|error| ApiError::Internal(error.to_string().into()))
}

/// Whether `password` matches `stored` (a PHC string). With no stored hash (unknown email) a
/// dummy hash is verified anyway, so the answer takes as long as for a wrong password.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("stored password hash is not a PHC string");
            return false;
        };
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        known && matches
    })
    .await
    .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(b"not a real password", &salt)
            .expect("argon2 with default parameters hashes any input")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let keys = JwtKeys::new(b"test secret", Duration::from_secs(60));
        let user = Uuid::new_v4();
        let token = keys.issue(user).unwrap();
        assert_eq!(keys.verify(&token), Some(user));
        let other = JwtKeys::new(b"other secret", Duration::from_secs(60));
        assert_eq!(other.verify(&token), None);
        assert_eq!(keys.verify("not.a.token"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
