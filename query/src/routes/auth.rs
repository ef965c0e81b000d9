//! `POST /v1/auth/signup` and `POST /v1/auth/token`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{hash_password, verify_password};
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::ApiJson;
use crate::QueryState;

const MIN_PASSWORD_CHARS: usize = 8;
/// Bounds the argon2 work one request can ask for.
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_EMAIL_BYTES: usize = 254;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Case-insensitively unique.
    #[schema(example = "pilot@example.com")]
    pub email: String,
    /// At least 8 characters.
    #[schema(example = "correct horse battery", min_length = 8)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// A plausible address: one `@`, something on both sides, a dot in the domain, no whitespace.
/// Real validation is the confirmation mail we do not send yet.
fn parse_email(email: &str) -> Result<&str> {
    let invalid = || ApiError::invalid("email is not a valid address");
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(email)
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!("password must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(format!("password must have at most {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// Creates a user. Disabled deployments answer 403 `signup_disabled`.
#[utoipa::path(
    post, path = "/v1/auth/signup", operation_id = "signup", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "user created", body = User),
        (status = 400, description = "invalid email, or password shorter than 8 characters", body = ErrorBody),
        (status = 403, description = "signup is disabled on this deployment", body = ErrorBody),
        (status = 409, description = "email already registered (case-insensitive)", body = ErrorBody),
    )
)]
pub async fn signup(
    State(state): State<QueryState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<User>)> {
    if !state.signup_enabled {
        return Err(ApiError::SignupDisabled);
    }
    let email = parse_email(&body.email)?.to_owned();
    check_password(&body.password)?;
    let password_hash = hash_password(body.password).await?;
    let inserted: Result<Uuid, sqlx::Error> =
        sqlx::query_scalar("INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id")
            .bind(&email)
            .bind(&password_hash)
            .fetch_one(&state.pool)
            .await;
    match inserted {
        Ok(id) => Ok((StatusCode::CREATED, Json(User { id, email }))),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(ApiError::EmailTaken),
        Err(error) => Err(error.into()),
    }
}

/// Exchanges email and password for an access token.
#[utoipa::path(
    post, path = "/v1/auth/token", operation_id = "create_token", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "access token", body = TokenResponse),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "unknown email or wrong password (one answer for both)", body = ErrorBody),
        (status = 429, description = "too many failed logins from this address (password guessing); see Retry-After", body = ErrorBody),
    )
)]
pub async fn token(
    State(state): State<QueryState>,
    extensions: Extensions,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<TokenResponse>> {
    // While an address's budget of failed logins is spent, every login from it is refused before
    // the password is checked: a right guess must not be told apart from a wrong one.
    let client = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    if let Some(wait) = client.and_then(|ip| state.login_failures.empty_for(ip)) {
        return Err(ApiError::TooManyLogins { retry_after_s: credentials::limits::retry_after_secs(wait) });
    }
    let login = check_login(&state, body).await;
    if let (Err(ApiError::InvalidLogin), Some(ip)) = (&login, client) {
        state.login_failures.charge(ip);
    }
    let user_id = login?;
    let access_token = state.jwt.issue(user_id)?;
    Ok(Json(TokenResponse { access_token, token_type: "bearer", expires_in: state.jwt.lifetime().as_secs() }))
}

/// The user whose email and password these are.
async fn check_login(state: &QueryState, body: Credentials) -> Result<Uuid> {
    // No registered email holds U+0000 (signup refuses control characters), and PostgreSQL
    // cannot even compare text holding it (a 500): such an email is unknown, answered like any
    // other unknown email (the dummy hash is still verified, the failure still counted).
    let row: Option<(Uuid, String)> = if body.email.contains('\0') {
        None
    } else {
        sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)")
            .bind(&body.email)
            .fetch_optional(&state.pool)
            .await?
    };
    let (user_id, stored) = match row {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let password = body.password;
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidLogin);
    }
    let matches = verify_password(password, stored).await?;
    user_id.filter(|_| matches).ok_or(ApiError::InvalidLogin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in ["a@b.co", "Pilot.One+x@Example.org"] {
            assert!(parse_email(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@b.co.", "a@.co", " a@b.co"] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password("ääääääää").is_ok());
        assert!(check_password(&"x".repeat(1025)).is_err());
    }
}
