//! `flightline`: one binary, one subcommand per role or tool (CONTRACT.md §5).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flightline::roles::{self, Group, HttpRoles};
use flightline::{runtime, send, simulate, Settings};

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
    Send {
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        file: PathBuf,
        /// Base URL of the ingest API (default: http://FLIGHTLINE_HTTP_ADDR).
        #[arg(long)]
        target: Option<String>,
        /// Pace at this multiple of recorded speed (1 = real time); omit to send as fast as accepted.
        #[arg(long)]
        rate_multiplier: Option<f64>,
        /// Packets per request (1–500).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// A fleet of simulated drones flying realistic flights through the API.
    Simulate {
        #[arg(long, default_value_t = 3)]
        drones: u32,
        #[arg(long, default_value_t = 50)]
        hz: u32,
        /// Flights per drone; omit to fly until interrupted.
        #[arg(long)]
        flights: Option<u32>,
        /// Seconds in the air per flight.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        #[arg(long)]
        target: Option<String>,
        /// Attach the simulated drones to this user.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Measure a role under load; prints one JSON object of figures.
    Bench {
        #[command(subcommand)]
        command: flightline::bench::BenchCommand,
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
    runtime::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    // Installed before any role starts, so no early measurement is lost.
    let _ = runtime::metrics();
    let default_target = || format!("http://{}", settings.http_addr);
    match command {
        Command::All => roles::all(&settings, runtime::shutdown_token()).await,
        Command::Ingest => {
            roles::serve_http(&settings, HttpRoles { ingest: true, query: false }, runtime::shutdown_token()).await
        }
        Command::Query => {
            roles::serve_http(&settings, HttpRoles { ingest: false, query: true }, runtime::shutdown_token()).await
        }
        Command::Process { group } => roles::process(&settings, group, runtime::shutdown_token()).await,
        Command::Migrate => {
            let pool = runtime::connect_postgres(&settings, 1).await?;
            runtime::migrate(&pool).await?;
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
        Command::Send { api_key, file, target, rate_multiplier, batch } => {
            let target = target.unwrap_or_else(default_target);
            let report = send::send(send::SendOptions {
                api_key: &api_key,
                file: &file,
                target: &target,
                rate_multiplier,
                batch,
            })
            .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Simulate { drones, hz, flights, duration, target, owner } => {
            let pool = runtime::connect_postgres(&settings, 2).await?;
            let owner_id = match owner {
                Some(email) => Some(flightline::user_id_by_email(&pool, &email).await?),
                None => None,
            };
            let options = simulate::SimulateOptions {
                drones,
                hz,
                flights,
                duration_s: duration,
                target: target.unwrap_or_else(default_target),
                owner_id,
            };
            let report = simulate::simulate(&pool, options, runtime::shutdown_token()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench {
            command: flightline::bench::BenchCommand::Ingest { drones, hz, seconds, mode, target, batch },
        } => {
            let pool = runtime::connect_postgres(&settings, 2).await?;
            let target = target.unwrap_or_else(default_target);
            let options = flightline::bench::BenchOptions { drones, hz, seconds, mode, target, batch };
            let report = flightline::bench::bench_ingest(&pool, options, runtime::shutdown_token()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench { command: flightline::bench::BenchCommand::E2e { drones, hz, seconds, target } } => {
            let options = flightline::bench_e2e::E2eOptions {
                drones,
                hz,
                seconds,
                target: target.unwrap_or_else(default_target),
                redis_url: settings.redis_url.clone(),
            };
            let report = flightline::bench_e2e::bench_e2e(options).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench { command: flightline::bench::BenchCommand::Analytics { rows, runs } } => {
            let pool = runtime::connect_postgres(&settings, 2).await?;
            runtime::migrate(&pool).await?;
            let report = flightline::bench_analytics::bench_analytics(&pool, rows, runs).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench {
            command: flightline::bench::BenchCommand::Store { rows, batch, runs, copy_path, retried_every },
        } => {
            let options = flightline::bench_store::StoreBenchOptions { rows, batch, runs, copy_path, retried_every };
            let report = flightline::bench_store::bench_store(&settings.database_url, options).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
