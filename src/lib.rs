//! The `flightline` binary's library half: the production plumbing every role shares —
//! configuration ([`settings`]), logging, shutdown and connections ([`runtime`]), the endpoints
//! every HTTP process serves ([`http`]) and the role supervisor ([`roles`]). The roles themselves
//! live in the `ingest`, `query` and `processors` crates. The client tools and benches are not
//! part of this library: they are modules of the binary (`src/tools/`, `src/bench/`).

pub mod http;
pub mod roles;
pub mod runtime;
pub mod settings;

pub use settings::Settings;

/// The user id for `--owner EMAIL`, with a clear error when there is no such user.
pub async fn user_id_by_email(pool: &sqlx::PgPool, email: &str) -> anyhow::Result<uuid::Uuid> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(pool)
        .await?;
    id.ok_or_else(|| anyhow::anyhow!("no user with email {email}; sign up first (POST /v1/auth/signup)"))
}
