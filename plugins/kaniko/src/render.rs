//! The Kaniko executor's log, rendered in BuildKit's plain style so every
//! builder's log reads the same: `#N [stage i/n] STEP`, `#N 0.42 output`,
//! `#N CACHED`, `#N DONE 1.2s`, `#N ERROR: …`.
//!
//! Kaniko logs with logrus (`INFO[0003] RUN make` with `--log-format color`
//! or `time=… level=info msg="RUN make"` with `--log-format text`) and lets
//! RUN output through as plain lines. Steps are numbered by walking the
//! Dockerfile's stages alongside the commands Kaniko announces.

use std::collections::HashSet;
use std::time::Instant;

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub label: String,
    pub from: String,
    pub instructions: Vec<String>,
}

/// `$NAME` and `${NAME}` replaced by `args`' values; unknown names stay.
pub fn expand_args(text: &str, args: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in args {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// The stages of a Dockerfile: instructions joined across `\` line
/// continuations, comments and blank lines dropped.
pub fn parse_stages(dockerfile: &str) -> Vec<Stage> {
    parse_stages_given(dockerfile, &[])
}

/// [`parse_stages`], a `FROM ${ARG}` taking the build arg `given` has for
/// it, else the global `ARG`'s default.
pub fn parse_stages_given(dockerfile: &str, given: &[(String, String)]) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        logical.push(std::mem::take(&mut pending));
    }
    if !pending.trim().is_empty() {
        logical.push(pending);
    }
    let mut stages: Vec<Stage> = Vec::new();
    // Global `ARG`s (before the first FROM) and their defaults: what a
    // `FROM ${BASE}` means unless a build arg says otherwise.
    let mut global_args: Vec<(String, String)> = Vec::new();
    for instruction in logical {
        let keyword = instruction
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = instruction.split_whitespace().collect();
            let from = words
                .iter()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .unwrap_or(&"")
                .to_string();
            let name = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("as"))
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string());
            stages.push(Stage {
                label: name.unwrap_or_default(),
                from: expand_args(&expand_args(&from, given), &global_args),
                instructions: Vec::new(),
            });
        } else if keyword == "ARG" && stages.is_empty() {
            for declared in instruction.split_whitespace().skip(1) {
                let (name, default) = declared.split_once('=').unwrap_or((declared, ""));
                let default = default.trim_matches('"').to_string();
                global_args.push((name.to_string(), default));
            }
        } else if keyword != "ARG" || !stages.is_empty() {
            if let Some(stage) = stages.last_mut() {
                stage.instructions.push(instruction);
            }
        }
    }
    if stages.len() > 1 {
        for (i, stage) in stages.iter_mut().enumerate() {
            if stage.label.is_empty() {
                stage.label = format!("stage-{i}");
            }
        }
    }
    stages
}

/// A logrus line's level and message, or `None` for a plain output line.
fn parse_logrus(line: &str) -> Option<(&'static str, String)> {
    // `INFO[0003] message`
    for (prefix, level) in [
        ("INFO[", "info"),
        ("WARN[", "warn"),
        ("ERRO[", "error"),
        ("FATA[", "error"),
        ("DEBU[", "debug"),
        ("TRAC[", "debug"),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let message = rest.split_once("] ").map(|(_, m)| m).unwrap_or("");
            return Some((level, message.trim().to_string()));
        }
    }
    // `time="…" level=info msg="message"`
    if line.starts_with("time=") && line.contains(" level=") {
        let level = match line.split(" level=").nth(1)?.split_whitespace().next()? {
            "info" => "info",
            "warning" | "warn" => "warn",
            "error" | "fatal" | "panic" => "error",
            _ => "debug",
        };
        let message = line.split(" msg=").nth(1).unwrap_or("");
        let message = message
            .strip_prefix('"')
            .and_then(|m| m.rsplit_once('"').map(|(m, _)| m))
            .map(|m| m.replace("\\\"", "\"").replace("\\\\", "\\"))
            .unwrap_or_else(|| message.to_string());
        return Some((level, message));
    }
    None
}

fn keyword(instruction: &str) -> String {
    instruction
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Turns Kaniko's lines into BuildKit-style lines, one at a time.
pub struct KanikoRenderer {
    stages: Vec<Stage>,
    /// The stage being built, and the next instruction in it to match.
    stage: Option<usize>,
    next_instruction: usize,
    next_vertex: u32,
    current: Option<(u32, Instant)>,
    cached_commands: HashSet<String>,
    pub cached_steps: u32,
    pub total_steps: u32,
    pub error: Option<String>,
    /// The layer cache's repository: Kaniko pushes each layer there while
    /// the step still runs, and that push is not a step of its own.
    cache_repo: Option<String>,
}

impl KanikoRenderer {
    pub fn new(dockerfile: &str) -> Self {
        KanikoRenderer {
            cache_repo: None,
            stages: parse_stages(dockerfile),
            stage: None,
            next_instruction: 0,
            next_vertex: 1,
            current: None,
            cached_commands: HashSet::new(),
            cached_steps: 0,
            total_steps: 0,
            error: None,
        }
    }

    /// The build args the executor was given: a stage's `FROM ${ARG}` is
    /// shown as the image they make it.
    pub fn with_build_args(mut self, dockerfile: &str, args: &[(String, String)]) -> Self {
        self.stages = parse_stages_given(dockerfile, args);
        self
    }

    /// Say where the layer cache goes (`--cache-repo`).
    pub fn with_cache_repo(mut self, repo: Option<&str>) -> Self {
        self.cache_repo = repo.map(str::to_string);
        self
    }

    /// Whether `reference` (`repo:tag` or `repo@digest`) is in the cache.
    fn is_cache(&self, reference: &str) -> bool {
        self.cache_repo.as_deref().is_some_and(|repo| {
            reference
                .strip_prefix(repo)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
        })
    }

    fn close_current(&mut self, out: &mut Vec<String>) {
        if let Some((vertex, started)) = self.current.take() {
            out.push(format!(
                "#{vertex} DONE {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
    }

    fn open_step(&mut self, title: String, out: &mut Vec<String>) -> u32 {
        self.close_current(out);
        let vertex = self.next_vertex;
        self.next_vertex += 1;
        out.push(format!("#{vertex} {title}"));
        self.current = Some((vertex, Instant::now()));
        vertex
    }

    /// `[label i/n]` for step `i` (1-based, FROM being 1) of the stage.
    fn step_label(&self, stage: usize, step: usize) -> String {
        let s = &self.stages[stage];
        let n = s.instructions.len() + 1;
        if s.label.is_empty() {
            format!("[{step}/{n}]")
        } else {
            format!("[{} {step}/{n}]", s.label)
        }
    }

    /// Render one line of Kaniko's output.
    pub fn line(&mut self, raw: &str) -> Vec<String> {
        let mut out = Vec::new();
        let raw = raw.trim_end();
        if let Some(error) = raw.strip_prefix("error building image: ") {
            self.fail(error, &mut out);
            return out;
        }
        // The executor's own failure outside any step (a refused push
        // permission check before the build): Go's lowercase `error …`.
        if self.current.is_none() && raw.starts_with("error ") {
            self.fail(raw, &mut out);
            return out;
        }
        let Some((level, message)) = parse_logrus(raw) else {
            // Output of a RUN step.
            match self.current {
                Some((vertex, started)) => out.push(format!(
                    "#{vertex} {:.3} {raw}",
                    started.elapsed().as_secs_f64()
                )),
                None => out.push(raw.to_string()),
            }
            return out;
        };
        match level {
            "error" => {
                self.fail(&message, &mut out);
                return out;
            }
            "warn" => {
                out.push(match self.current {
                    Some((vertex, _)) => format!("#{vertex} WARN: {message}"),
                    None => format!("WARN: {message}"),
                });
                return out;
            }
            "debug" => return out,
            _ => {}
        }
        if let Some(command) = message.strip_prefix("Using caching version of cmd: ") {
            self.cached_commands.insert(command.trim().to_string());
            return out;
        }
        if let Some(rest) = message.strip_prefix("Building stage '") {
            let index = rest
                .split("idx: '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .and_then(|i| i.parse::<usize>().ok());
            let index = index.unwrap_or_else(|| self.stage.map_or(0, |s| s + 1));
            if index < self.stages.len() {
                self.stage = Some(index);
                self.next_instruction = 0;
                let title = format!(
                    "{} FROM {}",
                    self.step_label(index, 1),
                    self.stages[index].from
                );
                self.total_steps += 1;
                self.open_step(title, &mut out);
            }
            return out;
        }
        if let Some(reference) = message.strip_prefix("Pushing image to ") {
            // A layer pushed to the cache belongs to the step that made it:
            // a line of that step, which stays open (its error, if it
            // fails, is its own).
            if self.is_cache(reference) {
                if let Some((vertex, started)) = self.current {
                    out.push(format!(
                        "#{vertex} {:.3} pushing layer to cache {reference}",
                        started.elapsed().as_secs_f64()
                    ));
                }
                return out;
            }
            self.open_step(format!("pushing {reference}"), &mut out);
            return out;
        }
        if let Some(pushed) = message.strip_prefix("Pushed ") {
            if let Some((vertex, _)) = self.current {
                out.push(format!("#{vertex} {message}"));
            }
            if !self.is_cache(pushed) {
                self.close_current(&mut out);
            }
            return out;
        }
        // A command of the current stage starting?
        if let Some(stage) = self.stage {
            let instructions = &self.stages[stage].instructions;
            let word = keyword(&message);
            if let Some(offset) = instructions[self.next_instruction.min(instructions.len())..]
                .iter()
                .position(|i| keyword(i) == word && !word.is_empty())
            {
                let index = self.next_instruction + offset;
                self.next_instruction = index + 1;
                let title = format!(
                    "{} {}",
                    self.step_label(stage, index + 2),
                    instructions[index]
                );
                self.total_steps += 1;
                let vertex = self.open_step(title, &mut out);
                if self.cached_commands.contains(message.trim()) {
                    self.cached_steps += 1;
                    out.push(format!("#{vertex} CACHED"));
                    self.current = None;
                }
            }
        }
        out
    }

    fn fail(&mut self, message: &str, out: &mut Vec<String>) {
        if self.error.is_none() {
            self.error = Some(message.to_string());
        }
        match self.current.take() {
            Some((vertex, _)) => out.push(format!("#{vertex} ERROR: {message}")),
            None => out.push(format!("ERROR: {message}")),
        }
    }

    /// Close the last step.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.error.is_none() {
            self.close_current(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = "# syntax comment\nARG BASE=x\nFROM golang:1.23 AS build\nWORKDIR /src\nCOPY . .\nRUN go build \\\n    -o /app\n\nFROM busybox:1\nCOPY --from=build /app /app\nCMD [\"/app\"]\n";

    #[test]
    fn stages_and_steps_come_from_the_dockerfile() {
        let stages = parse_stages(DOCKERFILE);
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].label, "build");
        assert_eq!(stages[0].from, "golang:1.23");
        assert_eq!(
            stages[0].instructions,
            ["WORKDIR /src", "COPY . .", "RUN go build -o /app"]
        );
        assert_eq!(stages[1].label, "stage-1");
        assert_eq!(stages[1].instructions.len(), 2);
    }

    #[test]
    fn kaniko_output_reads_like_buildkit() {
        let mut r = KanikoRenderer::new(DOCKERFILE);
        let input = [
            "INFO[0000] Retrieving image manifest golang:1.23",
            "INFO[0000] Building stage 'golang:1.23' [idx: '0', base-idx: '-1']",
            "INFO[0000] Using caching version of cmd: COPY . .",
            "INFO[0001] WORKDIR /src",
            "INFO[0001] COPY . .",
            "INFO[0002] RUN go build -o /app",
            "INFO[0002] Taking snapshot of full filesystem...",
            "compiling main.go",
            "time=\"2026-11-22T03:00:00Z\" level=info msg=\"Building stage 'busybox:1' [idx: '1', base-idx: '-1']\"",
            "time=\"2026-11-22T03:00:00Z\" level=info msg=\"COPY --from=build /app /app\"",
            "time=\"2026-11-22T03:00:00Z\" level=info msg=\"CMD [\\\"/app\\\"]\"",
            "INFO[0005] Pushing image to 127.0.0.1:5000/acme/app:v1",
            "INFO[0006] Pushed 127.0.0.1:5000/acme/app@sha256:abc",
        ];
        let mut lines: Vec<String> = input.iter().flat_map(|l| r.line(l)).collect();
        lines.extend(r.finish());
        let text = lines.join("\n");
        assert!(text.contains("#1 [build 1/4] FROM golang:1.23"), "{text}");
        assert!(text.contains("#2 [build 2/4] WORKDIR /src"), "{text}");
        assert!(
            text.contains("#3 [build 3/4] COPY . .\n#3 CACHED"),
            "{text}"
        );
        assert!(
            text.contains("#4 [build 4/4] RUN go build -o /app"),
            "{text}"
        );
        assert!(text.contains("compiling main.go"), "{text}");
        assert!(text
            .lines()
            .any(|l| l.starts_with("#4 0.") && l.ends_with("compiling main.go")));
        assert!(text.contains("#5 [stage-1 1/3] FROM busybox:1"), "{text}");
        assert!(text.contains("#7 [stage-1 3/3] CMD [\"/app\"]"), "{text}");
        assert!(
            text.contains("#8 pushing 127.0.0.1:5000/acme/app:v1"),
            "{text}"
        );
        assert!(text.contains("#8 DONE"), "{text}");
        assert!(
            !text.contains("Taking snapshot"),
            "noise is left out: {text}"
        );
        assert_eq!((r.cached_steps, r.total_steps), (1, 7));
        assert!(r.error.is_none());
    }

    /// Issue 17, from a real executor's log (v1.19.2, `RUN exit 7` with
    /// the cache on): the layer-cache push that follows the RUN used to
    /// open a step of its own, close the RUN as `DONE` and take its error.
    #[test]
    fn issue_17_a_failing_run_keeps_its_error_across_the_cache_push() {
        let cache = "127.0.0.1:5000/default/cache/kfail";
        let mut r =
            KanikoRenderer::new("FROM 127.0.0.1:5000/base/busybox:1\nCOPY a /a\nRUN exit 7\n")
                .with_cache_repo(Some(cache));
        let mut lines = Vec::new();
        for l in [
            "time=\"2026-12-01T10:00:00Z\" level=info msg=\"Building stage '127.0.0.1:5000/base/busybox:1' [idx: '0', base-idx: '-1']\"",
            "time=\"2026-12-01T10:00:00Z\" level=info msg=\"COPY a /a\"",
            "time=\"2026-12-01T10:00:00Z\" level=info msg=\"RUN exit 7\"",
            "time=\"2026-12-01T10:00:01Z\" level=info msg=\"Pushing image to 127.0.0.1:5000/default/cache/kfail:a4e2c0ffee\"",
            "time=\"2026-12-01T10:00:01Z\" level=info msg=\"Pushed 127.0.0.1:5000/default/cache/kfail@sha256:0123\"",
            "error building image: error building stage: failed to execute command: waiting for process to exit: exit status 7",
        ] {
            lines.extend(r.line(l));
        }
        lines.extend(r.finish());
        let text = lines.join("\n");
        assert!(text.contains("#3 [3/3] RUN exit 7"), "{text}");
        assert!(text.contains("#3 ERROR: error building stage"), "{text}");
        assert!(!text.contains("#3 DONE"), "{text}");
        assert!(!text.contains("#4"), "the cache push is no step: {text}");
        assert!(
            text.contains("pushing layer to cache 127.0.0.1:5000/default/cache/kfail:a4e2c0ffee"),
            "{text}"
        );
        assert_eq!(r.total_steps, 3);
    }

    /// Render a recorded executor log (`testdata/`, Kaniko v1.19.2 built
    /// from source, run against the loopback registry).
    fn rendered(dockerfile: &str, log: &str, cache: Option<&str>) -> (KanikoRenderer, String) {
        let mut r = KanikoRenderer::new(dockerfile).with_cache_repo(cache);
        let mut lines = Vec::new();
        for line in log.lines() {
            lines.extend(r.line(line));
        }
        lines.extend(r.finish());
        let text = lines.join("\n");
        (r, text)
    }

    fn steps(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.contains(" DONE ") && !l.ends_with(" CACHED"))
            .collect()
    }

    #[test]
    fn recorded_a_multi_stage_build_reads_like_buildkit() {
        let (r, text) = rendered(
            include_str!("../testdata/multi-stage.Dockerfile"),
            include_str!("../testdata/multi-stage.log"),
            None,
        );
        assert_eq!(
            steps(&text),
            [
                "#1 [build 1/2] FROM 127.0.0.1:5000/base/busybox:1",
                "#2 [build 2/2] RUN echo built > /x",
                "#3 [stage-1 1/3] FROM 127.0.0.1:5000/base/busybox:1",
                "#4 [stage-1 2/3] COPY --from=build /x /x",
                "#5 [stage-1 3/3] CMD [\"cat\", \"/x\"]",
                "#6 pushing 127.0.0.1:5000/rec/ms:1",
                "#6 Pushed 127.0.0.1:5000/rec/ms@sha256:c5c33739db361cfee30ca1e64cb2a32e313af817e3b58531a0bdf7dd139747da",
            ],
            "{text}"
        );
        assert_eq!(text.matches(" DONE ").count(), 6, "{text}");
        assert_eq!((r.cached_steps, r.total_steps), (0, 5));
        assert!(r.error.is_none());
    }

    #[test]
    fn recorded_a_first_cached_build_pushes_its_layers_within_their_steps() {
        let cache = "127.0.0.1:5000/rec/cache";
        let (r, text) = rendered(
            include_str!("../testdata/cached.Dockerfile"),
            include_str!("../testdata/cache-filled.log"),
            Some(cache),
        );
        let steps = steps(&text);
        let titles: Vec<&str> = steps
            .iter()
            .copied()
            .filter(|l| !l.contains(" pushing layer"))
            .collect();
        assert_eq!(
            titles,
            [
                "#1 [1/3] FROM 127.0.0.1:5000/base/busybox:1",
                "#2 [2/3] RUN echo one > /one",
                "#3 [3/3] RUN echo two > /two",
                "#3 Pushed 127.0.0.1:5000/rec/cache@sha256:40ef4642b38429329f846b7b07d918aaee6a2994b7471413e4a7a9c096a6c084",
                "#3 Pushed 127.0.0.1:5000/rec/cache@sha256:5949b472cdb6e9c860565e98ba8f19f3d4c4f517613003aa51fc26401379a8b2",
                "#4 pushing 127.0.0.1:5000/rec/cached:1",
                "#4 Pushed 127.0.0.1:5000/rec/cached@sha256:35d0f4c8ee9495265ab76bd48efc935ab131f0feeff39540ab6fb88aa0d4cf0e",
            ],
            "{text}"
        );
        assert_eq!(text.matches("pushing layer to cache").count(), 2, "{text}");
        assert_eq!((r.cached_steps, r.total_steps), (0, 3));
    }

    #[test]
    fn recorded_a_cached_rebuild_marks_its_steps_cached() {
        let (r, text) = rendered(
            include_str!("../testdata/cached.Dockerfile"),
            include_str!("../testdata/cache-hit.log"),
            Some("127.0.0.1:5000/rec/cache"),
        );
        assert!(
            text.contains("#2 [2/3] RUN echo one > /one\n#2 CACHED"),
            "{text}"
        );
        assert!(
            text.contains("#3 [3/3] RUN echo two > /two\n#3 CACHED"),
            "{text}"
        );
        assert_eq!((r.cached_steps, r.total_steps), (2, 3));
    }

    #[test]
    fn recorded_a_refused_push_is_an_error_before_any_step() {
        let (r, text) = rendered(
            include_str!("../testdata/cached.Dockerfile"),
            include_str!("../testdata/push-refused.log"),
            None,
        );
        assert!(
            text.starts_with("ERROR: error checking push permissions"),
            "{text}"
        );
        assert!(r.error.as_deref().unwrap().contains("UNAUTHORIZED"));
        assert_eq!(r.total_steps, 0);
    }

    #[test]
    fn a_from_taking_its_image_from_an_arg_shows_the_image() {
        let dockerfile = "ARG BASE=busybox:1\nARG OTHER\nFROM ${BASE}\nRUN true\n";
        assert_eq!(parse_stages(dockerfile)[0].from, "busybox:1");
        let given = [(
            "BASE".to_string(),
            "127.0.0.1:5000/base/busybox:1".to_string(),
        )];
        let mut r = KanikoRenderer::new(dockerfile).with_build_args(dockerfile, &given);
        let lines = r.line(
            "INFO[0000] Building stage '127.0.0.1:5000/base/busybox:1' [idx: '0', base-idx: '-1']",
        );
        assert_eq!(lines, ["#1 [1/2] FROM 127.0.0.1:5000/base/busybox:1"]);
        assert_eq!(parse_stages("FROM $UNSET\n")[0].from, "$UNSET");
    }

    /// The image's own push is still a step.
    #[test]
    fn the_final_push_is_a_step() {
        let mut r = KanikoRenderer::new("FROM busybox\n").with_cache_repo(Some("r/acme/cache/app"));
        let mut lines = Vec::new();
        for l in [
            "INFO[0000] Building stage 'busybox' [idx: '0', base-idx: '-1']",
            "INFO[0001] Pushing image to r/acme/app:latest",
            "INFO[0002] Pushed r/acme/app@sha256:ab",
        ] {
            lines.extend(r.line(l));
        }
        let text = lines.join("\n");
        assert!(text.contains("#2 pushing r/acme/app:latest"), "{text}");
        assert!(text.contains("#2 DONE"), "{text}");
    }

    #[test]
    fn a_failing_run_ends_in_an_error_line() {
        let mut r = KanikoRenderer::new("FROM busybox\nRUN exit 3\n");
        let mut lines = Vec::new();
        for l in [
            "INFO[0000] Building stage 'busybox' [idx: '0', base-idx: '-1']",
            "INFO[0000] RUN exit 3",
            "error building image: error building stage: failed to execute command: waiting for process to exit: exit status 3",
        ] {
            lines.extend(r.line(l));
        }
        lines.extend(r.finish());
        let text = lines.join("\n");
        assert!(text.contains("#2 [2/2] RUN exit 3"), "{text}");
        assert!(text.contains("#2 ERROR: error building stage"), "{text}");
        assert!(r.error.as_deref().unwrap().contains("exit status 3"));
    }
}
