//! Render BuildKit's status stream in BuildKit's own plain style:
//!
//! ```text
//! #4 [2/3] RUN echo hi
//! #4 0.240 hi
//! #4 DONE 0.3s
//! #5 [3/3] COPY . /app
//! #5 CACHED
//! #6 ERROR: executor failed running ...
//! ```

use std::collections::{HashMap, VecDeque};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;

/// Lines of a failing step's output kept for the failure message.
const KEPT_OUTPUT_LINES: usize = 20;

#[derive(Default)]
struct VertexState {
    number: usize,
    name: String,
    started: Option<f64>,
    announced_cached: bool,
    finished: bool,
    is_step: bool,
    cached: bool,
    recent_output: VecDeque<String>,
    error: Option<String>,
}

/// Turns successive status messages into log lines, numbering vertices in
/// the order they appear.
#[derive(Default)]
pub struct Renderer {
    vertices: HashMap<String, VertexState>,
    next_number: usize,
    /// Digest of the vertex that failed first.
    failed: Option<String>,
    /// Partial output lines per vertex (logs arrive in arbitrary chunks).
    pending: HashMap<String, String>,
}

fn seconds(ts: &Option<Timestamp>) -> Option<f64> {
    ts.as_ref()
        .map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

/// Whether a vertex name is a Dockerfile step (`[2/3] RUN ...`, `[stage 1/2] ...`)
/// rather than internal work (`[internal] load ...`, `exporting to image`).
fn is_step(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('[') else {
        return false;
    };
    let Some(end) = rest.find(']') else {
        return false;
    };
    let inside = rest[..end].rsplit(' ').next().unwrap_or("");
    let mut parts = inside.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), None) if a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok()
    )
}

impl Renderer {
    /// The lines one status message adds to the log.
    pub fn render(&mut self, status: &StatusResponse) -> Vec<String> {
        let mut out = Vec::new();
        for vertex in &status.vertexes {
            let state = self.vertices.entry(vertex.digest.clone()).or_default();
            if state.number == 0 {
                self.next_number += 1;
                state.number = self.next_number;
                state.name = vertex.name.clone();
                state.is_step = is_step(&vertex.name);
                out.push(format!("#{} {}", state.number, vertex.name));
            }
            if state.started.is_none() {
                state.started = seconds(&vertex.started);
            }
            if vertex.cached && !state.announced_cached {
                state.announced_cached = true;
                state.cached = true;
                // BuildKit sometimes marks a vertex cached after reporting
                // it done; one closing line per step is enough.
                if !state.finished {
                    out.push(format!("#{} CACHED", state.number));
                }
            }
            if vertex.completed.is_some() && !state.finished {
                state.finished = true;
                // Output still buffered without a newline belongs before DONE.
                if let Some(rest) = self.pending.remove(&vertex.digest) {
                    if !rest.is_empty() {
                        out.push(format!("#{} {}", state.number, rest));
                    }
                }
                if !vertex.error.is_empty() {
                    state.error = Some(vertex.error.clone());
                    out.push(format!("#{} ERROR: {}", state.number, vertex.error));
                    if self.failed.is_none() {
                        self.failed = Some(vertex.digest.clone());
                    }
                } else if !state.cached {
                    let took = match (state.started, seconds(&vertex.completed)) {
                        (Some(a), Some(b)) => (b - a).max(0.0),
                        _ => 0.0,
                    };
                    out.push(format!("#{} DONE {:.1}s", state.number, took));
                }
            }
        }
        for log in &status.logs {
            let Some(state) = self.vertices.get_mut(&log.vertex) else {
                continue;
            };
            let elapsed = match (state.started, seconds(&log.timestamp)) {
                (Some(a), Some(b)) => (b - a).max(0.0),
                _ => 0.0,
            };
            let buffer = self.pending.entry(log.vertex.clone()).or_default();
            buffer.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(newline) = buffer.find('\n') {
                let line: String = buffer.drain(..=newline).collect();
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                out.push(format!("#{} {:.3} {}", state.number, elapsed, line));
                state.recent_output.push_back(line);
                if state.recent_output.len() > KEPT_OUTPUT_LINES {
                    state.recent_output.pop_front();
                }
            }
        }
        out
    }

    /// The first failing step's name and error, if any step failed.
    pub fn first_error(&self) -> Option<String> {
        let state = self.vertices.get(self.failed.as_ref()?)?;
        Some(format!(
            "step {}: {}",
            state.name,
            state.error.clone().unwrap_or_default()
        ))
    }

    /// The failing step's last output lines, joined.
    pub fn failed_step_output(&self) -> String {
        let Some(state) = self.failed.as_ref().and_then(|d| self.vertices.get(d)) else {
            return String::new();
        };
        let mut text = format!("failing step: {}", state.name);
        if !state.recent_output.is_empty() {
            text.push_str("\noutput:\n");
            text.push_str(&Vec::from(state.recent_output.clone()).join("\n"));
        }
        text
    }

    /// Dockerfile steps served from the cache.
    pub fn cached_steps(&self) -> u32 {
        self.vertices
            .values()
            .filter(|v| v.is_step && v.cached)
            .count() as u32
    }

    /// Dockerfile steps seen.
    pub fn total_steps(&self) -> u32 {
        self.vertices.values().filter(|v| v.is_step).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog};

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn steps_are_told_from_internal_work() {
        assert!(is_step("[2/3] RUN echo hi"));
        assert!(is_step("[builder 1/2] FROM x"));
        assert!(!is_step("[internal] load build definition from Dockerfile"));
        assert!(!is_step("exporting to image"));
    }

    #[test]
    fn renders_plain_style() {
        let mut r = Renderer::default();
        let started = Vertex {
            digest: "d1".into(),
            name: "[2/2] RUN echo hi".into(),
            started: ts(10, 0),
            ..Default::default()
        };
        let lines = r.render(&StatusResponse {
            vertexes: vec![started.clone()],
            logs: vec![VertexLog {
                vertex: "d1".into(),
                timestamp: ts(10, 240_000_000),
                msg: b"hi\n".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(lines, vec!["#1 [2/2] RUN echo hi", "#1 0.240 hi"]);
        let done = Vertex {
            completed: ts(11, 300_000_000),
            ..started
        };
        let lines = r.render(&StatusResponse {
            vertexes: vec![done],
            ..Default::default()
        });
        assert_eq!(lines, vec!["#1 DONE 1.3s"]);
        assert_eq!((r.cached_steps(), r.total_steps()), (0, 1));
    }
}
