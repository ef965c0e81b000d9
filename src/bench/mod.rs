//! `flightline bench <what>`: each bench measures one path as users run it and prints one JSON
//! object of figures (progress on stderr). Every bench takes its flights from the `sim` crate,
//! the one synthetic-flight generator, and its statistics from [`stats`].

pub mod analytics;
pub mod archive;
pub mod e2e;
pub mod ingest;
pub mod pipeline;
pub mod replay;
pub mod store;

use tokio_util::sync::CancellationToken;

use flightline::{runtime, Settings};

/// `flightline bench <what>`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Drive a simulated fleet against a running ingest API and print one JSON object of figures.
    Ingest(ingest::IngestBenchOptions),
    /// Ingest → live latency against a running `flightline all`: Redis channel and SSE stream.
    E2e(e2e::E2eOptions),
    /// Time the analytics of one synthetic flight (load, polars, write, tag) in the configured
    /// database; prints the medians of several runs.
    Analytics(analytics::AnalyticsBenchOptions),
    /// The store group's batched write into telemetry_raw, UNNEST vs COPY, in a scratch database;
    /// prints the medians of several runs.
    Store(store::StoreBenchOptions),
    /// The whole pipeline under an open-loop load against a running `flightline all`: ack →
    /// stored / Redis / SSE latency, every group's lag and drain time, the processes' memory.
    Pipeline(pipeline::PipelineOptions),
    /// `flightline replay` over a scratch topic of millions of sim packets (scratch database):
    /// messages/s of a sessionizer replay (dry run) and of a store replay.
    Replay(replay::ReplayBenchOptions),
    /// The archive group's writes into the CQL node, and a flight read back.
    Archive(archive::ArchiveBenchOptions),
}

/// Runs one bench and prints its report on stdout.
pub async fn run(command: BenchCommand, settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let default_target = format!("http://{}", settings.http_addr);
    let report = match command {
        BenchCommand::Ingest(options) => {
            let pool = runtime::connect_postgres(settings, 2).await?;
            serde_json::to_string(&ingest::bench_ingest(&pool, options, &default_target, shutdown).await?)?
        }
        BenchCommand::E2e(options) => {
            serde_json::to_string(&e2e::bench_e2e(options, &default_target, &settings.redis_url).await?)?
        }
        BenchCommand::Analytics(options) => {
            let pool = runtime::connect_postgres(settings, 2).await?;
            runtime::migrate(&pool).await?;
            serde_json::to_string(&analytics::bench_analytics(&pool, options).await?)?
        }
        BenchCommand::Store(options) => {
            serde_json::to_string(&store::bench_store(&settings.database_url, options).await?)?
        }
        BenchCommand::Pipeline(options) => {
            serde_json::to_string(&pipeline::bench_pipeline(options, settings, &default_target, shutdown).await?)?
        }
        BenchCommand::Replay(options) => serde_json::to_string(&replay::bench_replay(settings, options).await?)?,
        BenchCommand::Archive(options) => serde_json::to_string(&archive::bench_archive(settings, options).await?)?,
    };
    println!("{report}");
    Ok(())
}

/// Signs up a new user on the API at `target` (`<prefix>-<random>@flightline.local`) and signs it
/// in: its access token and id, for the benches that own drones or open their owner's streams.
pub async fn sign_up(http: &reqwest::Client, target: &str, prefix: &str) -> anyhow::Result<(String, uuid::Uuid)> {
    use anyhow::Context;
    let email = format!("{prefix}-{}@flightline.local", uuid::Uuid::new_v4().simple());
    let credentials =
        serde_json::json!({"email": email, "password": format!("bench-{}", uuid::Uuid::new_v4().simple())});
    let post = |path: &str, what: &'static str| {
        let request =
            http.post(format!("{target}{path}")).timeout(std::time::Duration::from_secs(30)).json(&credentials);
        async move {
            let response = request.send().await?.error_for_status().context(what)?;
            anyhow::Ok(response.json::<serde_json::Value>().await?)
        }
    };
    let user = post("/v1/auth/signup", "signing up the bench user (is signup enabled on the target?)").await?;
    let user_id = user["id"].as_str().and_then(|id| id.parse().ok()).context("no user id in the signup response")?;
    let token = post("/v1/auth/token", "signing in the bench user").await?;
    let token = token["access_token"].as_str().context("no access_token in the token response")?;
    Ok((token.to_owned(), user_id))
}

/// Runs `work` on a pool of `connections` to a new, migrated database
/// (`flightline_bench_<kind>_<random>` on the server of `database_url`), then drops that database
/// again, also when `work` failed.
pub async fn with_scratch_database<T, F, Fut>(
    database_url: &str,
    kind: &str,
    connections: u32,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use anyhow::Context;
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let admin_options = sqlx::postgres::PgConnectOptions::from_str(database_url).context("parsing the database url")?;
    let db_name = format!("flightline_bench_{kind}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin_options.connect().await.context("connecting PostgreSQL")?;
    sqlx::raw_sql(&format!(r#"CREATE DATABASE "{db_name}""#))
        .execute(&mut admin)
        .await
        .context("creating the scratch database")?;
    let result = async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(admin_options.clone().database(&db_name))
            .await?;
        runtime::migrate(&pool).await?;
        let result = work(pool.clone()).await;
        pool.close().await;
        result
    }
    .await;
    // `WITH (FORCE)` cannot end an autovacuum worker for a non-superuser role, and a bench that
    // just wrote millions of rows usually has one running: retried while it finishes.
    let drop = format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#);
    let mut dropped = sqlx::raw_sql(&drop).execute(&mut admin).await;
    for _ in 0..30 {
        if dropped.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        dropped = sqlx::raw_sql(&drop).execute(&mut admin).await;
    }
    let _ = admin.close().await;
    let report = result?;
    // The figures stand even when the scratch database outlives the bench.
    if let Err(error) = dropped {
        eprintln!("warning: the scratch database {db_name} could not be dropped ({error}); drop it by hand");
    }
    Ok(report)
}

/// The statistics every bench reports with.
pub mod stats {
    /// The q-quantile of sorted values, linear interpolation between order statistics (0 when
    /// empty): the convention of numpy and of CONTRACT.md §4.
    pub fn percentile(sorted: &[f64], q: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = q * (sorted.len() - 1) as f64;
        let low = rank.floor() as usize;
        let high = rank.ceil() as usize;
        sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
    }

    /// The median of unsorted values (0 when empty).
    pub fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        percentile(&values, 0.5)
    }

    /// Rounded to `decimals` decimals, for printing.
    pub fn round(value: f64, decimals: i32) -> f64 {
        let scale = 10f64.powi(decimals);
        (value * scale).round() / scale
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn percentiles_interpolate() {
            let values: Vec<f64> = (1..=100).map(f64::from).collect();
            assert_eq!(percentile(&values, 0.5), 50.5);
            assert!((percentile(&values, 0.99) - 99.01).abs() < 1e-9);
            assert_eq!(percentile(&[], 0.5), 0.0);
            assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
            assert_eq!(round(1.23456, 2), 1.23);
        }
    }
}
