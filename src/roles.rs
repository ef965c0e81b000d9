//! Runs the roles: each is a task with a child of the root shutdown token; the first task to end
//! (with an error, or after shutdown) cancels the others, and the caller learns which one ended
//! and why.

use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime;
use crate::settings::{ConsumerSettings, Settings};

/// Consumer groups a process can run (`flightline process <group>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    Store,
    Live,
    Sessionizer,
    Analytics,
    /// Raw telemetry into the CQL archive (needs `archive_nodes`).
    Archive,
}

/// `flightline all`: migrations, then ingest, query and every processor in one process.
pub async fn all(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = runtime::connect_postgres(settings, 2).await?;
    runtime::migrate(&pool).await?;
    pool.close().await;
    let mut tasks = JoinSet::new();
    let (s, t) = (settings.clone(), shutdown.child_token());
    tasks.spawn(async move { ("http", serve_http(&s, HttpRoles { ingest: true, query: true }, t).await) });
    let archive = settings.archive()?.is_some();
    if archive {
        // An archive that is down must not keep the rest from starting: its group waits for it.
        if let Err(error) = migrate_archive(settings).await {
            tracing::warn!(error = format!("{error:#}"), "archive migration failed; the archive group retries");
        }
    }
    let groups = [Group::Store, Group::Live, Group::Sessionizer, Group::Analytics];
    for group in groups.into_iter().chain(archive.then_some(Group::Archive)) {
        let (s, t) = (settings.clone(), shutdown.child_token());
        tasks.spawn(async move { (group_name(group), process(&s, group, t).await) });
    }
    supervise(tasks, shutdown, settings.shutdown_timeout()?).await
}

/// Waits for every task; the first one to finish cancels the rest, which then have `deadline`
/// to drain before they are aborted. Returns the first error.
async fn supervise(
    mut tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut first_error = None;
    let cut_off = async {
        shutdown.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::pin!(cut_off);
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => joined,
                None => break,
            },
            () = &mut cut_off => {
                // Nothing acknowledged is lost: what was not committed is redelivered.
                tracing::warn!(roles = tasks.len(), ?deadline, "drain deadline passed; aborting the roles still running");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        };
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

/// Runs `role` beside a `/metrics` listener on `metrics_addr` when one is set (every role, a
/// `process` one above all: it has no other HTTP server). The listener stops with the role.
pub async fn with_metrics<F>(
    settings: &Settings,
    shutdown: CancellationToken,
    role: impl FnOnce(CancellationToken) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let addr = settings.metrics_addr.trim();
    if addr.is_empty() {
        return role(shutdown).await;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (FLIGHTLINE_METRICS_ADDR)"))?;
    tracing::info!(%addr, "metrics listening");
    let handle = runtime::metrics();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()) }
        }),
    );
    let stop = shutdown.child_token();
    let serving = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let server = tokio::spawn(std::future::IntoFuture::into_future(serving));
    let result = role(shutdown).await;
    stop.cancel();
    let _ = server.await;
    result
}

pub fn group_name(group: Group) -> &'static str {
    match group {
        Group::Store => "store",
        Group::Live => "live",
        Group::Sessionizer => "sessionizer",
        Group::Analytics => "analytics",
        Group::Archive => "archive",
    }
}

/// The archive's keyspace and table, when an archive is configured (part of `flightline migrate`).
/// Returns whether there was one.
pub async fn migrate_archive(settings: &Settings) -> anyhow::Result<bool> {
    let Some(config) = settings.archive()? else {
        return Ok(false);
    };
    let session = processors::archive::connect(&config).await?;
    processors::archive::migrate(&session, &config)
        .await
        .with_context(|| format!("creating the archive keyspace {}", config.keyspace))?;
    Ok(true)
}

/// Which HTTP roles one server carries.
#[derive(Debug, Clone, Copy)]
pub struct HttpRoles {
    pub ingest: bool,
    pub query: bool,
}

/// The HTTP server of `flightline ingest`, `flightline query` or both (`all`), with the health
/// and OpenAPI endpoints every process serves.
pub async fn serve_http(settings: &Settings, roles: HttpRoles, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool_size = if roles.ingest { settings.ingest.pool_size } else { 0 }
        + if roles.query { settings.query.pool_size } else { 0 };
    let pool = runtime::connect_postgres(settings, pool_size.max(1)).await?;
    let kafka = runtime::kafka_base(settings);
    let mut app = axum::Router::new();
    let mut publisher = None;
    let mut redis = None;
    if roles.ingest {
        let ingest_publisher = ingest::Publisher::new(
            &kafka,
            &settings.kafka_name(processors::topics::TELEMETRY),
            Duration::from_millis(settings.ingest.ack_timeout_ms),
            Duration::from_millis(settings.ingest.kafka_linger_ms),
        )
        .context("creating the Kafka producer")?;
        // The cross-instance `ts` order lives in Redis.
        let ingest_redis = runtime::connect_redis(settings).await?;
        let order = ingest::TsOrder::with_redis(ingest_redis.clone());
        let config = ingest::IngestConfig {
            rate_per_drone_hz: settings.ingest.rate_hz,
            rate_burst: settings.ingest.rate_burst,
            max_in_flight_packets: settings.ingest.max_in_flight_packets,
            ..ingest::IngestConfig::default()
        };
        let state = ingest::AppState::with_config(pool.clone(), ingest_publisher.clone(), order, config)
            .with_shutdown(shutdown.clone());
        app = app.merge(ingest::router(state));
        redis = Some(ingest_redis);
        publisher = Some(ingest_publisher);
    }
    if roles.query {
        settings.check_jwt_secret()?;
        let client = redis::Client::open(settings.redis_url.as_str()).context("REDIS_URL is not a valid Redis URL")?;
        let query_settings = query::QuerySettings {
            jwt_secret: settings.query.jwt_secret.clone(),
            token_lifetime: Duration::from_secs(settings.query.jwt_ttl_s),
            signup_enabled: settings.query.signup_enabled,
            login_failure_burst: settings.query.login_failure_burst,
            login_failures_per_s: settings.query.login_failures_per_s,
            flights_topic: settings.kafka_name(processors::topics::FLIGHTS),
            ..query::QuerySettings::default()
        };
        let mut state = query::QueryState::new(query_settings, pool.clone(), client, &kafka)
            .await
            .context("starting the query role (is Redis up? try `make stack-up`)")?
            .with_shutdown(shutdown.clone());
        if let Some(archive) = settings.archive()? {
            // Connected on first use: the query role starts (and serves every flight PostgreSQL
            // still holds) while the archive is down.
            let archive = QueryArchive(processors::archive::LazyArchive::new(archive));
            state = state.with_archive(std::sync::Arc::new(archive));
        }
        redis = Some(state.redis.clone());
        app = app.merge(query::router(state));
    }
    let readiness = crate::http::Readiness {
        pool,
        kafka: std::sync::Arc::new(kafka.create().context("creating the Kafka client")?),
        redis,
    };
    app = app.merge(crate::http::common_routes(readiness, runtime::metrics()));
    app = crate::http::contract_fallbacks(app).layer(axum::middleware::from_fn(crate::http::track_requests));
    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (FLIGHTLINE_HTTP_ADDR)", settings.http_addr))?;
    tracing::info!(addr = %settings.http_addr, ?roles, "http listening");
    // Client addresses reach the handlers (failed authentications are budgeted per address).
    crate::http::serve(listener, app, settings.serve_limits()?, shutdown).await.context("http server")?;
    if let Some(publisher) = publisher {
        // Every request in flight has been answered; flush anyway so nothing queued is lost.
        tokio::task::spawn_blocking(move || publisher.flush(Duration::from_secs(10))).await?;
    }
    Ok(())
}

/// The archive as flight detail and CSV read it past PostgreSQL's retention.
struct QueryArchive(processors::archive::LazyArchive);

impl query::archive::RawArchive for QueryArchive {
    fn read(&self, drone_id: uuid::Uuid, from_us: i64, to_us: i64) -> query::archive::ReadFuture<'_> {
        Box::pin(async move {
            let read = async { self.0.table().await?.read(drone_id, from_us, to_us).await };
            read.await.map_err(|error| query::archive::ArchiveError(error.to_string()))
        })
    }
}

/// `flightline process <group>`.
pub async fn process(settings: &Settings, group: Group, shutdown: CancellationToken) -> anyhow::Result<()> {
    let telemetry = settings.kafka_name(processors::topics::TELEMETRY);
    let runner = |group_id: String, consumer: ConsumerSettings| processors::RunnerConfig {
        group_id,
        topic: telemetry.clone(),
        dlq_topic: settings.kafka_name(processors::topics::DLQ),
        batch_max: consumer.batch_max,
        batch_wait: Duration::from_millis(consumer.batch_wait_ms),
        kafka: runtime::kafka_base(settings),
    };
    match group {
        Group::Store => {
            let pool = runtime::connect_postgres(settings, settings.store.pool_size).await?;
            let group_id = settings.kafka_name(processors::store::GROUP_ID);
            let retention = (settings.store.raw_retention_days > 0).then_some(settings.store.raw_retention_days);
            if retention.is_some() && settings.archive()?.is_none() {
                tracing::warn!(
                    days = settings.store.raw_retention_days,
                    "store.raw_retention_days without an archive: raw rows past it are gone for flight detail, CSV and recompute"
                );
            }
            let store =
                processors::store::Store::new(pool, &group_id, &telemetry).await?.with_retention(retention).await?;
            processors::run(runner(group_id, settings.store.consumer()), store, shutdown).await?;
        }
        Group::Live => {
            let redis = runtime::connect_redis(settings).await?;
            let live = processors::live::Live::new(redis).await?;
            let config = runner(settings.kafka_name(processors::live::GROUP_ID), settings.live);
            processors::run(config, live, shutdown).await?;
        }
        Group::Sessionizer => {
            let rule = settings.sessionizer.flight_rule()?;
            // One connection for the snapshots, one for the state loads of a rebalance.
            let pool = runtime::connect_postgres(settings, 2).await?;
            let producer: rdkafka::producer::FutureProducer = runtime::kafka_base(settings)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .create()
                .context("creating the Kafka producer")?;
            let group_id = settings.kafka_name(processors::sessionizer::GROUP_ID);
            let topics = processors::sessionizer::Topics {
                telemetry: telemetry.clone(),
                flights: settings.kafka_name(processors::topics::FLIGHTS),
            };
            let sessionizer =
                processors::sessionizer::SessionizerProcessor::new(pool, producer, &group_id, topics, rule).await?;
            processors::run(runner(group_id, settings.sessionizer.consumer()), sessionizer, shutdown).await?;
        }
        Group::Analytics => {
            let pool = runtime::connect_postgres(settings, settings.analytics.pool_size).await?;
            let mut analytics = processors::analytics::Analytics::new(
                pool,
                &settings.kafka_name(processors::store::GROUP_ID),
                &telemetry,
            );
            if let Some(archive) = settings.archive()? {
                analytics = analytics.with_archive(processors::archive::LazyArchive::new(archive));
            }
            let consumer = ConsumerSettings { batch_max: settings.analytics.batch_max, batch_wait_ms: 0 };
            let config = processors::RunnerConfig {
                topic: settings.kafka_name(processors::topics::FLIGHTS),
                ..runner(settings.kafka_name(processors::analytics::GROUP_ID), consumer)
            };
            processors::run(config, analytics, shutdown).await?;
        }
        Group::Archive => {
            let config = settings
                .archive()?
                .context("the archive group needs an archive: set archive_nodes (FLIGHTLINE_ARCHIVE_NODES)")?;
            // Waits for the archive rather than failing: in `flightline all` a failed role stops
            // the others, and an archive outage must not stop ingest.
            let table = loop {
                let attempt = async {
                    let session = std::sync::Arc::new(processors::archive::connect(&config).await?);
                    processors::archive::ArchiveTable::new(session, &config).await
                };
                match attempt.await {
                    Ok(table) => break table,
                    Err(error) if error.retry_hint() == processors::RetryHint::Fatal => return Err(error.into()),
                    Err(error) => {
                        tracing::warn!(%error, "archive not ready; the archive group retries in 5 s");
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        }
                    }
                }
            };
            let archive = processors::archive::Archive::new(table);
            let group_id = settings.kafka_name(processors::archive::GROUP_ID);
            processors::run(runner(group_id, settings.archive.consumer()), archive, shutdown).await?;
        }
    }
    Ok(())
}
