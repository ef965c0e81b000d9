//! The `flightline` binary's library half: configuration, the shared runtime plumbing, the role
//! supervisor, and the client-side tools (`send`, `simulate`). `main.rs` only parses arguments
//! and calls into here; the roles themselves live in the `ingest` and `processors` crates.

pub mod bench;
pub mod bench_analytics;
pub mod bench_e2e;
pub mod bench_store;
pub mod client;
pub mod http;
pub mod roles;
pub mod runtime;
pub mod send;
pub mod settings;
pub mod simulate;

pub use settings::Settings;

/// The user id for `--owner EMAIL`, with a clear error when there is no such user.
pub async fn user_id_by_email(pool: &sqlx::PgPool, email: &str) -> anyhow::Result<uuid::Uuid> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(pool)
        .await?;
    id.ok_or_else(|| anyhow::anyhow!("no user with email {email}; sign up first (POST /v1/auth/signup)"))
}
