//! Where the real services are: the environment variables of CONTRACT.md §5, defaulting to the
//! local stack (`deploy/local/stack.sh`), as `flightline`'s own settings do.

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `DATABASE_URL`: the server's admin database, in which test databases are created.
pub fn database_url() -> String {
    env_or("DATABASE_URL", "postgres://flightline:flightline@127.0.0.1:5432/flightline")
}

/// `KAFKA_BROKERS`: comma-separated bootstrap servers.
pub fn kafka_brokers() -> String {
    env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// `REDIS_URL`.
pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

/// A client of the local Redis (opening it does not connect yet).
pub fn redis_client() -> redis::Client {
    redis::Client::open(redis_url()).expect("REDIS_URL is a Redis URL")
}
