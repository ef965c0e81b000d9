//! Embeds every superseded schema version kept in `avro/history/` so that messages written with an
//! older (or, during a rolling upgrade, newer) writer schema stay decodable. Dropping a `.avsc` file
//! into that folder is all it takes; see `avro/history/README.md`.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let history_dir = manifest_dir.join("avro").join("history");
    // A directory path makes cargo rescan the whole folder for added, removed or changed files.
    println!("cargo:rerun-if-changed={}", history_dir.display());

    let mut files: Vec<PathBuf> = match fs::read_dir(&history_dir) {
        Ok(entries) => entries
            .map(|entry| entry.expect("readable avro/history entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();

    let mut generated = String::from(
        "/// Superseded schema versions from `avro/history/`: (file name, schema JSON).\n\
         pub(crate) const HISTORY: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let file_name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let absolute = path.canonicalize().expect("canonical history path");
        generated.push_str(&format!("    ({file_name:?}, include_str!({:?})),\n", absolute.to_string_lossy()));
    }
    generated.push_str("];\n");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out_dir.join("history.rs"), generated).expect("write history.rs");
}
