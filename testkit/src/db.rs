//! A database per test.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::env::database_url;

/// A fresh database of its own, migrated from `migrations/`.
pub struct TestDb {
    /// Connections to the test database.
    pub pool: PgPool,
    /// Its name, `fltest_<uuid>`.
    pub name: String,
    /// Its URL (`DATABASE_URL` with the database name replaced), for a process under test.
    pub url: String,
}

impl TestDb {
    /// Creates and migrates a randomly named database on the server of `DATABASE_URL`.
    pub async fn new() -> Self {
        let name = format!("fltest_{}", Uuid::new_v4().simple());
        let admin = admin().await;
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#)).execute(&admin).await.expect("create test database");
        admin.close().await;
        let url = replace_db_name(&database_url(), &name);
        let pool = PgPoolOptions::new().max_connections(8).connect(&url).await.expect("connect test database");
        sqlx::migrate!("../migrations").run(&pool).await.expect("migrations");
        TestDb { pool, name, url }
    }

    /// A pool of its own on this database, as another process would have: a test that aborts
    /// a task to simulate a crash closes that task's pool, so no connection the task left
    /// mid-query is ever handed to the test.
    pub async fn connect(&self) -> PgPool {
        PgPoolOptions::new().max_connections(8).connect(&self.url).await.expect("connect test database")
    }

    /// Closes the pool (every clone of it) and drops the database, even with sessions still open.
    /// Called at the end of a passing test; a failing one leaves its database to look at.
    pub async fn drop(self) {
        self.pool.close().await;
        let admin = admin().await;
        let _ = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name)).execute(&admin).await;
        admin.close().await;
    }
}

async fn admin() -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("PostgreSQL of the local stack must be up (deploy/local/stack.sh up)")
}

/// The URL of `pool`'s database on the server of `DATABASE_URL`, for another process on it.
pub fn url_of(pool: &PgPool) -> String {
    let name = pool.connect_options().get_database().expect("a database name").to_owned();
    replace_db_name(&database_url(), &name)
}

/// `url` with its database name replaced by `db`, query string kept.
fn replace_db_name(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_db_name;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(replace_db_name("postgres://u:p@h:5432/flightline", "t"), "postgres://u:p@h:5432/t");
        assert_eq!(
            replace_db_name("postgres://u:p@h/flightline?sslmode=disable", "t"),
            "postgres://u:p@h/t?sslmode=disable"
        );
    }
}
