//! `.dockerignore`, with Docker's semantics (moby's `patternmatcher` and
//! `dockerignore.ReadAll`):
//!
//! * a line starting with `#` is a comment; lines are trimmed; blank lines
//!   are skipped; a leading `!` makes an exception;
//! * a pattern is cleaned like Go's `filepath.Clean` and a leading `/` is
//!   dropped, so `/foo`, `./foo` and `foo/` all mean `foo`;
//! * the glob is Go's `filepath.Match` plus `**`: `*` and `?` stop at `/`,
//!   `[...]` is a class, `\` escapes, `**/` matches any number of
//!   directories (none included), a trailing `**` matches anything;
//! * a pattern matches a path when it matches the path or one of its parent
//!   directories; the last matching line decides.
//!
//! Written here rather than taken from a crate because no maintained crate
//! implements these exact semantics (gitignore's differ: there, `foo`
//! matches at any depth).

use regex::Regex;

/// One line of a `.dockerignore`.
#[derive(Debug)]
struct Rule {
    regex: Regex,
    exception: bool,
}

/// The parsed patterns of a `.dockerignore`.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

/// Go's `path.Clean`, for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Translate one cleaned pattern to an anchored regex, as moby does.
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                }
                if i + 1 >= chars.len() {
                    out.push_str(".*");
                } else {
                    out.push_str("(.*/)?");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                if let Some(next) = chars.get(i + 1) {
                    out.push_str(&regex::escape(&next.to_string()));
                    i += 1;
                } else {
                    out.push_str("\\\\");
                }
            }
            '[' => {
                // A class: copy through `]`, turning Go's `[^...]`/`[!...]`... into regex.
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| i + 1 + p)
                    .ok_or_else(|| format!("pattern {pattern:?} has an unterminated `[`"))?;
                out.push('[');
                let mut j = i + 1;
                if chars.get(j) == Some(&'^') {
                    out.push('^');
                    j += 1;
                }
                while j < end {
                    let c = chars[j];
                    if c == '\\' && j + 1 < end {
                        out.push_str(&regex::escape(&chars[j + 1].to_string()));
                        j += 2;
                        continue;
                    }
                    if matches!(c, '[' | '&' | '~' | '|') {
                        out.push('\\');
                    }
                    out.push(c);
                    j += 1;
                }
                out.push(']');
                i = end;
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    out.push('$');
    Regex::new(&out).map_err(|e| format!("pattern {pattern:?} is not valid: {e}"))
}

impl DockerIgnore {
    /// Parse a `.dockerignore`'s text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (number, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let exception = line.starts_with('!');
            if exception {
                line = line[1..].trim();
                if line.is_empty() {
                    return Err(format!(
                        ".dockerignore line {}: a `!` with no pattern",
                        number + 1
                    ));
                }
            }
            let mut pattern = clean(line);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
            let regex =
                compile(&pattern).map_err(|e| format!(".dockerignore line {}: {e}", number + 1))?;
            rules.push(Rule { regex, exception });
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any pattern is an exception (`!`); then an excluded directory
    /// must still be walked, since a file inside may be let back in.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (relative, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = {
            let mut out = Vec::new();
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash;
                out.push(&path[..end]);
                end += 1;
            }
            out
        };
        let mut excluded = false;
        for rule in &self.rules {
            // An exclusion can only change an included path and vice versa.
            if rule.exception != excluded {
                continue;
            }
            let matched =
                rule.regex.is_match(path) || parents.iter().any(|p| rule.regex.is_match(p));
            if matched {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn plain_names_match_at_the_root_and_everything_below_them() {
        let ignore = rules("node_modules\n/target/\n./build\n");
        assert!(ignore.excludes("node_modules"));
        assert!(ignore.excludes("node_modules/x/y.js"));
        assert!(
            !ignore.excludes("app/node_modules"),
            "unlike gitignore, only at the root"
        );
        assert!(ignore.excludes("target/debug/kiln"));
        assert!(ignore.excludes("build/out"));
        assert!(!ignore.excludes("src/main.rs"));
    }

    #[test]
    fn stars_stop_at_slashes_and_double_stars_do_not() {
        let ignore = rules("*.log\n**/*.tmp\ndocs/**\n");
        assert!(ignore.excludes("a.log"));
        assert!(!ignore.excludes("dir/a.log"), "* does not cross /");
        assert!(ignore.excludes("x.tmp"));
        assert!(ignore.excludes("deep/er/x.tmp"));
        assert!(ignore.excludes("docs/a/b"));
    }

    #[test]
    fn the_last_matching_line_decides_and_exceptions_let_files_back() {
        let ignore = rules("*.md\n!README.md\n# a comment\n\nsecret*\n");
        assert!(ignore.excludes("CHANGES.md"));
        assert!(!ignore.excludes("README.md"));
        assert!(ignore.excludes("secret.txt"));
        assert!(ignore.has_exceptions());
        let reexcluded = rules("!keep\nkeep\n");
        assert!(reexcluded.excludes("keep"));
    }

    #[test]
    fn question_marks_classes_and_escapes() {
        let ignore = rules("file?.txt\n[ab].bin\n[^c]x\nweird\\*name\n");
        assert!(ignore.excludes("file1.txt"));
        assert!(!ignore.excludes("file10.txt"));
        assert!(ignore.excludes("a.bin") && ignore.excludes("b.bin") && !ignore.excludes("c.bin"));
        assert!(ignore.excludes("dx") && !ignore.excludes("cx"));
        assert!(ignore.excludes("weird*name") && !ignore.excludes("weirdXname"));
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(DockerIgnore::parse("ok\n!\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(DockerIgnore::parse("[abc\n")
            .unwrap_err()
            .contains("unterminated"));
    }

    #[test]
    fn paths_are_cleaned_like_go() {
        assert_eq!(clean("./a/b/../c/"), "a/c");
        assert_eq!(clean("/a//b"), "/a/b");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("."), ".");
    }

    /// Issue 12: generated `.dockerignore` files and paths.
    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            "[a-c]{1,2}"
        }

        fn literal() -> impl Strategy<Value = String> {
            prop::collection::vec(segment(), 1..4).prop_map(|s| s.join("/"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any text parses or is refused naming its line; any path is
            /// then answered; nothing panics.
            #[test]
            fn any_text_and_path_are_answered(text in any::<String>(), path in any::<String>()) {
                match DockerIgnore::parse(&text) {
                    Ok(ignore) => {
                        let _ = ignore.excludes(&path);
                    }
                    Err(message) => prop_assert!(message.contains("line "), "{}", message),
                }
            }

            /// Glob-heavy patterns (the characters that build regexes)
            /// compile or are refused, and answer any path.
            #[test]
            fn glob_patterns_compile_or_are_refused(
                text in "([!#/*?\\[\\]^a-c.\\\\-]{0,12}\n){0,4}",
                path in "[a-c./*?]{0,12}",
            ) {
                if let Ok(ignore) = DockerIgnore::parse(&text) {
                    let _ = ignore.excludes(&path);
                }
            }

            /// A literal pattern excludes exactly that path and what is
            /// under it; `!` after it lets the same back in.
            #[test]
            fn a_literal_excludes_itself_and_its_contents(pattern in literal(), path in literal()) {
                let expected = path == pattern || path.starts_with(&format!("{pattern}/"));
                prop_assert_eq!(rules(&pattern).excludes(&path), expected);
                prop_assert_eq!(rules(&format!("/{pattern}/")).excludes(&path), expected);
                let excepted = rules(&format!("{pattern}\n!{pattern}"));
                prop_assert!(!excepted.excludes(&pattern));
            }

            /// `**` excludes everything; `*` excludes everything through
            /// the top directory.
            #[test]
            fn stars_exclude_everything(path in literal()) {
                prop_assert!(rules("**").excludes(&path));
                prop_assert!(rules("*").excludes(&path));
                prop_assert!(!rules("*\n!**").excludes(&path));
            }
        }
    }
}
