//! `flightline`: one binary, one subcommand per role or tool (CONTRACT.md §5).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flightline::roles::{self, Group, HttpRoles};
use flightline::{runtime, Settings};

mod bench;
mod tools;

// glibc malloc/free were ~37 % of the process's samples at 50 000 packets/s (plus ~3 % waiting on
// arena locks); mimalloc: 7-11 % less CPU in the whole-system A/B (BENCHMARKS.md, box G).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flightline", version, about = "Drone telemetry platform: ingest, processors, query")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process (ingest and query on FLIGHTLINE_HTTP_ADDR, all processors).
    All,
    /// The ingest API alone.
    Ingest,
    /// The query API (users, drones, live, flights) alone.
    Query,
    /// One consumer group.
    Process {
        #[arg(value_enum)]
        group: Group,
    },
    /// Apply database migrations.
    Migrate,
    /// Print the effective configuration as JSON, secrets redacted.
    Config,
    /// Manage drones.
    Drones {
        #[command(subcommand)]
        command: DronesCommand,
    },
    /// Stream a recorded packet file (.jsonl or .jsonl.gz) through the API, in batches.
    Send(tools::send::SendOptions),
    /// A fleet of simulated drones flying realistic flights through the API.
    Simulate(tools::simulate::SimulateOptions),
    /// MAVLink vehicles (UDP, a serial radio, a recorded .tlog) → telemetry packets through the
    /// API; a status line on stderr, one JSON summary on stdout.
    Bridge(tools::bridge::BridgeOptions),
    /// Re-run a consumer group over an event-time range of the log, beside the running pipeline;
    /// progress on stderr, one JSON summary on stdout.
    Replay(tools::replay::ReplayOptions),
    /// Measure a path under load; prints one JSON object of figures.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum DronesCommand {
    /// Register a drone; prints {"id", "api_key"} (the key is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// Email of the owning user.
        #[arg(long)]
        owner: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the async runtime: the span exporter runs on a thread of its own.
    let telemetry = runtime::init_telemetry(&cli.command.service_name());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    drop(runtime);
    // Flushes the spans still queued (blocking, so outside the runtime).
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// `service.name` of the spans this command exports (`OTEL_SERVICE_NAME` wins).
    fn service_name(&self) -> String {
        let name = match self {
            Command::All => return "flightline".into(),
            Command::Ingest => "ingest",
            Command::Query => "query",
            Command::Process { group } => roles::group_name(*group),
            Command::Replay(_) => "replay",
            Command::Bench { .. } => "bench",
            _ => "tools",
        };
        format!("flightline-{name}")
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    // Installed before any role starts, so no early measurement is lost.
    let _ = runtime::metrics();
    let default_target = format!("http://{}", settings.http_addr);
    match command {
        Command::All => roles::with_metrics(&settings, runtime::shutdown_token(), |t| roles::all(&settings, t)).await,
        Command::Ingest => {
            let roles = HttpRoles { ingest: true, query: false };
            roles::with_metrics(&settings, runtime::shutdown_token(), |t| roles::serve_http(&settings, roles, t)).await
        }
        Command::Query => {
            let roles = HttpRoles { ingest: false, query: true };
            roles::with_metrics(&settings, runtime::shutdown_token(), |t| roles::serve_http(&settings, roles, t)).await
        }
        Command::Process { group } => {
            roles::with_metrics(&settings, runtime::shutdown_token(), |t| roles::process(&settings, group, t)).await
        }
        Command::Migrate => {
            let pool = runtime::connect_postgres(&settings, 1).await?;
            runtime::migrate(&pool).await?;
            if roles::migrate_archive(&settings).await? {
                eprintln!("migrations applied (PostgreSQL and the archive keyspace {})", settings.archive_keyspace);
                return Ok(());
            }
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Command::Drones { command: DronesCommand::Create { name, owner } } => {
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let pool = runtime::connect_postgres(&settings, 1).await?;
            let owner_id = match owner {
                Some(email) => Some(flightline::user_id_by_email(&pool, &email).await?),
                None => None,
            };
            let (id, api_key) = credentials::create_drone(&pool, name.trim(), owner_id).await?;
            println!("{}", serde_json::json!({ "id": id, "api_key": api_key }));
            Ok(())
        }
        Command::Send(options) => {
            let report = tools::send::send(&options, &default_target).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Simulate(options) => {
            let pool = runtime::connect_postgres(&settings, 2).await?;
            let report = tools::simulate::simulate(&pool, &options, &default_target, runtime::shutdown_token()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bridge(options) => {
            let report = tools::bridge::bridge(&options, &default_target, runtime::shutdown_token()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Replay(options) => {
            // One trace per run: the recomputes' load / compute / write spans sit under it.
            let run = tracing::info_span!("replay.run");
            tracing::Instrument::instrument(tools::replay::replay(&settings, &options), run).await
        }
        Command::Bench { command } => bench::run(command, &settings, runtime::shutdown_token()).await,
    }
}
