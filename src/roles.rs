//! Runs the roles: each is a task with a child of the root shutdown token; the first task to end
//! (with an error, or after shutdown) cancels the others, and the caller learns which one ended
//! and why.

use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime;
use crate::settings::Settings;

/// Consumer groups a process can run (`flightline process <group>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    Store,
}

/// `flightline all`: migrations, then ingest and every processor in one process.
pub async fn all(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = runtime::connect_postgres(settings, 2).await?;
    runtime::migrate(&pool).await?;
    pool.close().await;
    let mut tasks = JoinSet::new();
    let (s, t) = (settings.clone(), shutdown.child_token());
    tasks.spawn(async move { ("ingest", ingest(&s, t).await) });
    for group in [Group::Store] {
        let (s, t) = (settings.clone(), shutdown.child_token());
        tasks.spawn(async move { (group_name(group), process(&s, group, t).await) });
    }
    supervise(tasks, shutdown).await
}

/// Waits for every task; the first one to finish cancels the rest. Returns the first error.
async fn supervise(
    mut tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a role task panicked")?;
        match result {
            Ok(()) => tracing::info!(role = name, "role stopped"),
            Err(error) => {
                tracing::error!(role = name, error = format!("{error:#}"), "role failed; stopping the others");
                first_error.get_or_insert(error.context(format!("role {name} failed")));
            }
        }
        shutdown.cancel();
    }
    first_error.map_or(Ok(()), Err)
}

pub fn group_name(group: Group) -> &'static str {
    match group {
        Group::Store => "store",
    }
}

/// `flightline ingest`.
pub async fn ingest(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = runtime::connect_postgres(settings, 16).await?;
    let publisher = ingest::Publisher::new(
        &runtime::kafka_base(settings),
        &settings.kafka_name(processors::topics::TELEMETRY),
        Duration::from_millis(settings.ingest_ack_timeout_ms),
    )
    .context("creating the Kafka producer")?;
    let app = ingest::router(ingest::AppState::new(pool, publisher.clone()));
    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (FLIGHTLINE_HTTP_ADDR)", settings.http_addr))?;
    tracing::info!(addr = %settings.http_addr, "ingest listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("http server")?;
    // Requests in flight have been answered; nothing acknowledged is still queued, but flush
    // anyway so a late delivery report is not lost with the process.
    tokio::task::spawn_blocking(move || publisher.flush(Duration::from_secs(10))).await?;
    Ok(())
}

/// `flightline process <group>`.
pub async fn process(settings: &Settings, group: Group, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kafka = runtime::kafka_base(settings);
    match group {
        Group::Store => {
            let pool = runtime::connect_postgres(settings, 4).await?;
            let group_id = settings.kafka_name(processors::store::GROUP_ID);
            let store = processors::store::Store::new(pool, &group_id).await?;
            let config = processors::RunnerConfig {
                group_id,
                topic: settings.kafka_name(processors::topics::TELEMETRY),
                dlq_topic: settings.kafka_name(processors::topics::DLQ),
                batch_max: settings.store_batch_max,
                batch_wait: Duration::from_millis(settings.store_batch_wait_ms),
                kafka,
            };
            processors::run(config, store, shutdown).await?;
        }
    }
    Ok(())
}
