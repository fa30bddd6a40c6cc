//! Call detail records: one JSON line per call (start, answer, end,
//! duration, from, to, final codes), written by a buffered writer task so
//! the message path never waits on the disk.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records queued before new ones are dropped (and logged).
const QUEUE: usize = 8192;

/// One finished call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// Call-ID.
    pub call_id: String,
    /// From URI.
    pub from: String,
    /// To URI (as dialled).
    pub to: String,
    /// `sip2sip`, `sip2pstn` or `relay`.
    pub route: String,
    /// INVITE received, Unix milliseconds.
    pub start_ms: u64,
    /// 2xx forwarded, Unix milliseconds.
    pub answer_ms: Option<u64>,
    /// BYE (or final failure), Unix milliseconds.
    pub end_ms: u64,
    /// Answered duration in seconds (answer → end).
    pub duration_s: f64,
    /// Final status of the INVITE.
    pub invite_status: u16,
    /// Final status of the BYE, if the call was answered and ended by one.
    pub bye_status: Option<u16>,
}

/// Milliseconds since the Unix epoch of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where records go; cloning is cheap. Without a file, records are dropped.
#[derive(Debug, Clone)]
pub struct CdrSink {
    tx: Option<mpsc::Sender<CallRecord>>,
}

impl CdrSink {
    /// A sink that drops every record.
    pub fn disabled() -> Self {
        CdrSink { tx: None }
    }

    /// Opens `path` for appending and starts the writer task, which flushes
    /// whenever its queue is empty and ends with `shutdown`.
    pub async fn open(path: PathBuf, shutdown: CancellationToken) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        let (tx, mut rx) = mpsc::channel::<CallRecord>(QUEUE);
        tokio::spawn(async move {
            let mut w = tokio::io::BufWriter::new(file);
            loop {
                let rec = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.cancelled() => None,
                };
                let Some(rec) = rec else { break };
                let mut line = serde_json::to_vec(&rec).unwrap_or_default();
                line.push(b'\n');
                if let Err(e) = w.write_all(&line).await {
                    tracing::warn!(file = %path.display(), error = %e, "CDR write failed");
                }
                if rx.is_empty() {
                    let _ = w.flush().await;
                }
            }
            while let Ok(rec) = rx.try_recv() {
                let mut line = serde_json::to_vec(&rec).unwrap_or_default();
                line.push(b'\n');
                let _ = w.write_all(&line).await;
            }
            let _ = w.flush().await;
        });
        Ok(CdrSink { tx: Some(tx) })
    }

    /// Queues a record; never waits (a full queue drops it with a warning).
    pub fn write(&self, rec: CallRecord) {
        if let Some(tx) = &self.tx {
            if tx.try_send(rec).is_err() {
                tracing::warn!("CDR queue full; record dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cdr.jsonl");
        let stop = CancellationToken::new();
        let sink = CdrSink::open(path.clone(), stop.clone())
            .await
            .expect("open");
        for i in 0..3u16 {
            sink.write(CallRecord {
                call_id: format!("c{i}"),
                from: "sip:alice@sipedge.local".into(),
                to: "sip:bob@sipedge.local".into(),
                route: "sip2sip".into(),
                start_ms: 1,
                answer_ms: Some(2),
                end_ms: 1002,
                duration_s: 1.0,
                invite_status: 200,
                bye_status: Some(200 + i),
            });
        }
        // Bounded wait for the writer task to flush.
        let mut text = String::new();
        for _ in 0..100 {
            text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
            if text.lines().count() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[2]["bye_status"], 202);
        assert_eq!(lines[0]["call_id"], "c0");
        stop.cancel();
        CdrSink::disabled().write(CallRecord {
            call_id: String::new(),
            from: String::new(),
            to: String::new(),
            route: String::new(),
            start_ms: 0,
            answer_ms: None,
            end_ms: 0,
            duration_s: 0.0,
            invite_status: 0,
            bye_status: None,
        });
    }
}
