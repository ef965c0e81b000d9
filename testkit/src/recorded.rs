//! The recorded real flights in `../shared/data/flights` (gzipped JSON lines, one packet a line).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// `shared/data/flights` beside the repository.
pub fn flights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/flights")
}

/// The path of a recorded flight by file name, e.g. `ap_spark404_copter.jsonl.gz` (an absolute
/// path stays as it is).
pub fn recorded_path(name: impl AsRef<Path>) -> PathBuf {
    flights_dir().join(name)
}

/// Every recorded stream (`*.jsonl.gz`), sorted by name.
pub fn recorded_streams() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(flights_dir())
        .expect("shared/data/flights exists")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    files.sort();
    files
}

/// A recorded flight (name or path, see [`recorded_path`]) as JSON packets.
pub fn read_recorded(name: impl AsRef<Path>) -> Vec<Value> {
    read_recorded_as(name)
}

/// A recorded flight (name or path, see [`recorded_path`]), each line deserialized as `T`.
pub fn read_recorded_as<T: DeserializeOwned>(name: impl AsRef<Path>) -> Vec<T> {
    let path = recorded_path(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| line.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display())))
        .collect()
}
