//! Server-Sent Events (the live streams of CONTRACT.md §2) read from a streaming response.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// Reads Server-Sent Events from a streaming response.
pub struct SseReader {
    response: Response,
    /// Bytes received and not yet parsed (a chunk may end inside a UTF-8 character).
    buffer: Vec<u8>,
}

/// One block of an SSE stream.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// `: text` without data, e.g. a keepalive.
    Comment(String),
    /// An event: its `event:` name and its `data:` lines joined by `\n`.
    Event { event: Option<String>, data: String },
}

impl SseReader {
    /// Asserts a 200 `text/event-stream` response and reads its body from here on.
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        SseReader { response, buffer: Vec::new() }
    }

    /// The next comment or event, or panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> SseItem {
        tokio::time::timeout(timeout, self.next_item()).await.expect("no SSE item in time")
    }

    async fn next_item(&mut self) -> SseItem {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(bytes).expect("utf-8");
                let mut event = None;
                let mut data = Vec::new();
                let mut comment = None;
                for line in block.lines() {
                    if let Some(text) = line.strip_prefix(':') {
                        comment = Some(text.trim().to_owned());
                    } else if let Some(name) = line.strip_prefix("event:") {
                        event = Some(name.trim().to_owned());
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
                    }
                }
                if data.is_empty() {
                    if let Some(comment) = comment {
                        return SseItem::Comment(comment);
                    }
                    continue;
                }
                return SseItem::Event { event, data: data.join("\n") };
            }
            let chunk = self.response.chunk().await.expect("SSE body").expect("SSE stream ended");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next `telemetry` event's data as JSON, skipping comments.
    pub async fn next_telemetry(&mut self, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                SseItem::Comment(_) => continue,
                SseItem::Event { event, data } => {
                    assert_eq!(event.as_deref(), Some("telemetry"));
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
            }
        }
    }
}
