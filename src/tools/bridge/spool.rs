//! The on-disk buffer between the vehicles and the API, and the senders that drain it.
//!
//! Every batch is written to a file of its drone's queue before it is sent, and the file is
//! removed only once the API acknowledged it (201), so a link to the server can drop — or the
//! bridge be restarted — without losing telemetry: a queue found on disk at start is sent first.
//! One folder per API key (named by a hash, the key itself is not written down), files numbered
//! in order. The buffer is bounded in bytes over all queues.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::tools::client::IngestClient;

/// What every queue shares: the byte budget.
pub struct Spool {
    root: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    bytes: u64,
    packets: u64,
}

/// One drone's batches, oldest first.
pub struct Queue {
    spool: Arc<Spool>,
    dir: PathBuf,
    state: Mutex<QueueState>,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Entry>,
    next_seq: u64,
}

/// The buffer is full: the batch was not written.
#[derive(Debug)]
pub struct Full;

/// How a drone's batches went, for the status line and the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SendStats {
    pub packets_sent: u64,
    pub requests: u64,
    pub retries: u64,
    pub rejected_packets: u64,
}

impl Spool {
    pub fn new(root: &Path, max_bytes: u64) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(root).with_context(|| format!("cannot create the buffer folder {}", root.display()))?;
        Ok(Arc::new(Self { root: root.to_owned(), max_bytes, used: AtomicU64::new(0) }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl Queue {
    /// The queue of `api_key`, with the batches an earlier run left behind.
    pub fn open(spool: &Arc<Spool>, api_key: &str) -> anyhow::Result<Arc<Self>> {
        let digest = sha2::Sha256::digest(api_key.as_bytes());
        let dir = spool.root.join(hex::encode(&digest[..8]));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the buffer folder {}", dir.display()))?;
        let mut pending = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never acknowledged, never complete.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name.strip_suffix(".json").and_then(|s| s.parse::<u64>().ok()) else { continue };
            let body = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let packets = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body)
                .with_context(|| format!("{} is not a batch of packets", path.display()))?
                .len() as u64;
            pending.push(Entry { seq, bytes: body.len() as u64, packets });
        }
        pending.sort_by_key(|e| e.seq);
        let next_seq = pending.last().map_or(0, |e| e.seq + 1);
        spool.used.fetch_add(pending.iter().map(|e| e.bytes).sum(), Ordering::Relaxed);
        Ok(Arc::new(Self {
            spool: spool.clone(),
            dir,
            state: Mutex::new(QueueState { pending: pending.into(), next_seq }),
            notify: tokio::sync::Notify::new(),
        }))
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:012}.json"))
    }

    /// Writes one batch (a JSON array of `packets` packets) behind the others.
    pub fn push(&self, body: &[u8], packets: u64) -> anyhow::Result<Result<(), Full>> {
        let bytes = body.len() as u64;
        let before = self.spool.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.spool.max_bytes {
            self.spool.used.fetch_sub(bytes, Ordering::Relaxed);
            return Ok(Err(Full));
        }
        let mut state = self.state.lock().expect("queue lock");
        let seq = state.next_seq;
        let path = self.path(seq);
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(error) = written {
            self.spool.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(error).with_context(|| format!("cannot write to the buffer {}", path.display()));
        }
        state.next_seq += 1;
        state.pending.push_back(Entry { seq, bytes, packets });
        drop(state);
        self.notify.notify_one();
        Ok(Ok(()))
    }

    fn front(&self) -> Option<Entry> {
        self.state.lock().expect("queue lock").pending.front().copied()
    }

    fn remove_front(&self, entry: Entry) -> anyhow::Result<()> {
        let path = self.path(entry.seq);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        self.state.lock().expect("queue lock").pending.pop_front();
        self.spool.used.fetch_sub(entry.bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Batches and packets waiting.
    pub fn backlog(&self) -> (usize, u64) {
        let state = self.state.lock().expect("queue lock");
        (state.pending.len(), state.pending.iter().map(|e| e.packets).sum())
    }
}

/// Sends the queue's batches in order until `stop`; a batch leaves the disk only once
/// acknowledged. `client` retries like `flightline send` (429/503 after `Retry-After`, server
/// errors and broken connections with backoff, for up to 5 minutes); past that the batch stays
/// and is tried again, so an outage of any length loses nothing the buffer could hold. A batch
/// the API refuses for its content is moved to `rejected/` (resending cannot help, and it must
/// not block the drone's later telemetry); a refused API key ends the bridge.
pub async fn drain(
    queue: Arc<Queue>,
    client: IngestClient,
    label: String,
    stats: Arc<Mutex<SendStats>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let Some(entry) = queue.front() else {
            tokio::select! {
                () = queue.notify.notified() => continue,
                () = stop.cancelled() => return Ok(()),
            }
        };
        let path = queue.path(entry.seq);
        let body = tokio::fs::read(&path).await.with_context(|| format!("reading {}", path.display()))?;
        let result = tokio::select! {
            result = client.post_batch(body) => result,
            () = stop.cancelled() => return Ok(()),
        };
        match result {
            Ok(delivered) => {
                queue.remove_front(entry)?;
                let mut stats = stats.lock().expect("stats lock");
                stats.packets_sent += entry.packets;
                stats.requests += 1;
                stats.retries += u64::from(delivered.retries);
            }
            Err(error) => {
                let message = format!("{error:#}");
                if message.contains("kept refusing") {
                    eprintln!("bridge: {label}: {message}; the batch stays buffered and is tried again");
                    continue;
                }
                if message.contains("refused the batch with 401") || message.contains("refused the batch with 403") {
                    anyhow::bail!("{label}: the API refused the api key: {message}");
                }
                let rejected = queue.dir.join("rejected");
                std::fs::create_dir_all(&rejected).with_context(|| format!("creating {}", rejected.display()))?;
                let kept = rejected.join(format!("{:012}.json", entry.seq));
                std::fs::copy(&path, &kept).with_context(|| format!("keeping {}", kept.display()))?;
                queue.remove_front(entry)?;
                eprintln!("bridge: {label}: {message}; {} packets moved to {}", entry.packets, kept.display());
                stats.lock().expect("stats lock").rejected_packets += entry.packets;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flightline-spool-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn batches_survive_a_restart_in_order_and_the_budget_holds() {
        let dir = temp_dir("restart");
        let spool = Spool::new(&dir, 40).unwrap();
        let queue = Queue::open(&spool, "key-a").unwrap();
        queue.push(br#"[{"a":1}]"#, 1).unwrap().unwrap();
        queue.push(br#"[{"a":2},{"a":3}]"#, 2).unwrap().unwrap();
        assert!(queue.push(&[b' '; 20], 0).unwrap().is_err(), "over the 40-byte budget");
        assert_eq!(queue.backlog(), (2, 3));
        std::fs::write(queue.dir.join("000000000009.json.tmp"), b"[").unwrap();
        drop(queue);

        let spool = Spool::new(&dir, 1000).unwrap();
        let queue = Queue::open(&spool, "key-a").unwrap();
        assert_eq!(queue.backlog(), (2, 3));
        assert_eq!(spool.used_bytes(), 9 + 17);
        let first = queue.front().unwrap();
        assert_eq!(std::fs::read(queue.path(first.seq)).unwrap(), br#"[{"a":1}]"#);
        queue.remove_front(first).unwrap();
        queue.push(br#"[{"a":4}]"#, 1).unwrap().unwrap();
        assert_eq!(queue.front().unwrap().seq, 1);
        assert_eq!(queue.backlog(), (2, 3));
        assert!(!queue.dir.join("000000000009.json.tmp").exists());
        // Another key, another queue.
        assert_eq!(Queue::open(&spool, "key-b").unwrap().backlog(), (0, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
