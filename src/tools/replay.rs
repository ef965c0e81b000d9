//! `flightline replay --group G --from T [--to T] [--drone ID] [--dry-run]` (CONTRACT.md §5): a
//! consumer group's work re-run over an event-time range of the log, beside the running pipeline.
//! The work is `processors::replay`; this is its command line: the arguments, the progress line
//! on stderr and the one JSON summary on stdout.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use processors::replay::{self, Progress, ReplayConfig};
use uuid::Uuid;

use flightline::{runtime, Settings};

/// The groups `--group` names. `live` is known so that it is refused with a reason rather than
/// with "invalid value".
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayGroup {
    Sessionizer,
    Analytics,
    Store,
    Live,
    Archive,
}

/// `flightline replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayOptions {
    /// The consumer group whose work is re-run.
    #[arg(long, value_enum)]
    pub group: ReplayGroup,
    /// Start of the range, event time: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    pub from: String,
    /// End of the range (inclusive), event time: RFC 3339 or epoch milliseconds; default: the end
    /// of the log.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this drone.
    #[arg(long)]
    pub drone: Option<Uuid>,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Kafka readers of a sessionizer replay, each with a share of the partitions.
    #[arg(long, default_value_t = processors::replay::DEFAULT_READERS)]
    pub readers: usize,
}

/// A time of the command line, µs since the epoch: RFC 3339 (any offset) or integer epoch ms.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return ms.checked_mul(1000).with_context(|| format!("{text} ms is out of range"));
    }
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{text:?} is neither RFC 3339 (2026-05-01T12:00:00Z) nor epoch milliseconds"))?;
    Ok(parsed.timestamp_micros())
}

/// Runs the replay and prints its summary.
pub async fn replay(settings: &Settings, options: &ReplayOptions) -> anyhow::Result<()> {
    match options.group {
        ReplayGroup::Live => anyhow::bail!(
            "--group live is refused: the live view is the present, not history (it keeps each drone's newest \
             packet for 30 s; old packets can never change it). Replay sessionizer, analytics, store or archive"
        ),
        ReplayGroup::Archive => anyhow::ensure!(
            settings.archive()?.is_some(),
            "--group archive needs an archive: set archive_nodes (FLIGHTLINE_ARCHIVE_NODES)"
        ),
        ReplayGroup::Sessionizer | ReplayGroup::Analytics | ReplayGroup::Store => {}
    }
    let from_us = parse_time(&options.from).context("--from")?;
    let to_us = options.to.as_deref().map(parse_time).transpose().context("--to")?;
    if let Some(to_us) = to_us {
        anyhow::ensure!(to_us >= from_us, "--to must not be before --from");
    }
    // Checked before anything is read: a replay cuts with the rule configured now.
    let rule = settings.sessionizer.flight_rule()?;
    let pool = runtime::connect_postgres(settings, 2).await?;
    let progress = Arc::new(Progress::default());
    let config = ReplayConfig {
        kafka: runtime::kafka_base(settings),
        telemetry_topic: settings.kafka_name(processors::topics::TELEMETRY),
        store_group: settings.kafka_name(processors::store::GROUP_ID),
        from_us,
        to_us,
        drone: options.drone,
        dry_run: options.dry_run,
        progress: progress.clone(),
        readers: options.readers,
    };
    let name = match options.group {
        ReplayGroup::Sessionizer => "sessionizer",
        ReplayGroup::Analytics => "analytics",
        ReplayGroup::Archive => "archive",
        _ => "store",
    };
    let reporter = std::thread::spawn({
        let progress = progress.clone();
        move || report_progress(name, &progress)
    });
    // Flights past PostgreSQL's retention are analysed from the archive, as the analytics group
    // does (connected on first use: a replay of flights PostgreSQL holds does not need it up).
    // Read only for the groups that analyse: a store replay does not fail on an archive setting.
    let archive = || settings.archive().map(|archive| archive.map(processors::archive::LazyArchive::new));
    let summary = match options.group {
        ReplayGroup::Sessionizer => {
            replay::sessionize::run_with_archive(&pool, &config, rule, archive()?).await.map(serde_json::to_value)
        }
        ReplayGroup::Analytics => replay::recompute::run(&pool, &config, archive()?).await.map(serde_json::to_value),
        ReplayGroup::Archive => replay_archive(settings, &config).await.map(serde_json::to_value),
        _ => replay::restore::run(&pool, &config).await.map(serde_json::to_value),
    };
    progress.done.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    let summary = summary.with_context(|| format!("replay of {name}"))??;
    println!("{summary}");
    Ok(())
}

/// The archive replay, on a session of its own.
async fn replay_archive(
    settings: &Settings,
    config: &ReplayConfig,
) -> processors::Result<replay::archive::ArchiveReplaySummary> {
    let archive = settings.archive().map_err(|error| processors::Error::Fatal(format!("{error:#}")))?;
    let archive = archive.ok_or_else(|| processors::Error::Fatal("no archive configured".into()))?;
    let session = std::sync::Arc::new(processors::archive::connect(&archive).await?);
    let table = processors::archive::ArchiveTable::new(session, &archive).await?;
    replay::archive::run(&table, config).await
}

/// The progress line on stderr until the replay is done: rewritten in place on a terminal, a
/// line every 5 s otherwise (logs).
fn report_progress(group: &str, progress: &Progress) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { Duration::from_millis(500) } else { Duration::from_secs(5) };
    let started = Instant::now();
    let mut last_print = Instant::now();
    while !progress.done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_print.elapsed() < every {
            continue;
        }
        last_print = Instant::now();
        let line = progress_line(group, progress, started.elapsed());
        let mut stderr = std::io::stderr().lock();
        let _ = if terminal { write!(stderr, "\r\x1b[2K{line}") } else { writeln!(stderr, "{line}") };
        let _ = stderr.flush();
    }
    if terminal {
        let _ = writeln!(std::io::stderr(), "\r\x1b[2K{}", progress_line(group, progress, started.elapsed()));
    }
}

fn progress_line(group: &str, progress: &Progress, elapsed: Duration) -> String {
    let read = progress.read.load(Ordering::Relaxed);
    let total = progress.total.load(Ordering::Relaxed).max(read);
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let rate = read as f64 / seconds;
    let eta = if rate > 0.0 && total > read {
        format!("ETA {:.0} s", (total - read) as f64 / rate)
    } else {
        "ETA —".to_owned()
    };
    let percent = if total > 0 { 100.0 * read as f64 / total as f64 } else { 0.0 };
    let unit = if group == "analytics" { "flights" } else { "messages" };
    format!(
        "replay {group}: {} · {read}/{total} {unit} ({percent:.0} %) · {rate:.0} {unit}/s · {eta}",
        progress.phase()
    )
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_rfc_3339_or_epoch_milliseconds() {
        assert_eq!(parse_time("2026-05-01T12:00:00Z").unwrap(), 1_777_636_800_000_000);
        assert_eq!(parse_time("2026-05-01T14:00:00.5+02:00").unwrap(), 1_777_636_800_500_000);
        assert_eq!(parse_time("1777636800000").unwrap(), 1_777_636_800_000_000);
        assert!(parse_time("yesterday").is_err());
    }
}
