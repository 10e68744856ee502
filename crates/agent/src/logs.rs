//! Container logs on demand: the control plane asks while someone reads them, the agent streams
//! the engine's lines back in chunks until the log ends or the reader goes away. Nothing is kept.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use corral_proto::{LogChunk, LogLine, LogsRequest};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::engine::Engine;

/// Lines sent in one chunk at most; a busy log is batched rather than sent line by line.
const CHUNK_LINES: usize = 200;
/// How long a partial chunk waits for more lines before it goes out.
const CHUNK_WAIT: Duration = Duration::from_millis(30);

/// The log streams of one connection. Dropping it stops them all: a new connection starts over.
#[derive(Default)]
pub struct LogStreams {
    running: HashMap<u64, AbortHandle>,
}

impl LogStreams {
    pub fn start(&mut self, engine: &Engine, request: LogsRequest, out: mpsc::Sender<LogChunk>) {
        self.running.retain(|_, task| !task.is_finished());
        let id = request.id;
        let task = tokio::spawn(stream(engine.clone(), request, out));
        if let Some(previous) = self.running.insert(id, task.abort_handle()) {
            previous.abort();
        }
    }

    pub fn cancel(&mut self, id: u64) {
        if let Some(task) = self.running.remove(&id) {
            task.abort();
        }
    }
}

impl Drop for LogStreams {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

async fn stream(engine: Engine, request: LogsRequest, out: mpsc::Sender<LogChunk>) {
    let options = LogsOptionsBuilder::new().follow(request.follow).stdout(true).stderr(true).tail(&request.tail.to_string()).build();
    let mut logs = engine.docker().logs(&request.container, Some(options));
    let mut lines = Vec::new();
    let end = loop {
        let next = if lines.is_empty() {
            logs.next().await
        } else {
            match tokio::time::timeout(CHUNK_WAIT, logs.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if !send(&out, request.id, &mut lines, None).await {
                        return;
                    }
                    continue;
                }
            }
        };
        match next {
            None => break "the log ended (the container stopped)".to_string(),
            Some(Err(e)) => break format!("the engine stopped sending the log: {}", crate::error::describe(&e)),
            Some(Ok(output)) => push_lines(&mut lines, output),
        }
        if lines.len() >= CHUNK_LINES && !send(&out, request.id, &mut lines, None).await {
            return;
        }
    };
    send(&out, request.id, &mut lines, Some(end)).await;
}

/// `false` when the connection is gone and the stream should stop.
async fn send(out: &mpsc::Sender<LogChunk>, id: u64, lines: &mut Vec<LogLine>, end: Option<String>) -> bool {
    out.send(LogChunk { id, lines: std::mem::take(lines), end }).await.is_ok()
}

pub(crate) fn push_lines(lines: &mut Vec<LogLine>, output: LogOutput) {
    let (stream, message) = match output {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { .. } => return,
    };
    let text = String::from_utf8_lossy(&message);
    for line in text.trim_end_matches('\n').split('\n') {
        lines.push(LogLine { stream: stream.to_string(), line: line.trim_end_matches('\r').to_string() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_per_stream() {
        let mut lines = Vec::new();
        push_lines(&mut lines, LogOutput::StdOut { message: "a\r\nb\n".into() });
        push_lines(&mut lines, LogOutput::StdErr { message: "oops\n".into() });
        let got: Vec<_> = lines.iter().map(|l| (l.stream.as_str(), l.line.as_str())).collect();
        assert_eq!(got, [("stdout", "a"), ("stdout", "b"), ("stderr", "oops")]);
    }
}
