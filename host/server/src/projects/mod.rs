//! Projects: saved build recipes that build on a git push.
//!
//! | item | what it does |
//! |---|---|
//! | [`push`] | a push delivery at a project's webhook: whose it is (GitHub, GitLab, Gitea/Forgejo, Standard Webhooks), its signature, the push it describes |
//! | [`Glob`] | the `branches`, `tagsPattern` and `paths` globs |
//! | [`decide`] | whether a push builds the project, and with which reference and tags, or why not |
//! | [`render_tags`] | tag templates (`{branch}`, `{tag}`, `{sha}`, `{sha7}`, `{number}`) into image tags |
//!
//! A project's build is an ordinary build: the API turns the project and
//! the push into a CreateBuild request and sends it through the same
//! validation and queue (`api::builds::accept`).

pub mod push;

use crate::store::ProjectRecord;

/// A glob over `/`-separated names: `*` and `?` stay within one segment,
/// `**` crosses segments, everything else is literal.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: Vec<char>,
}

/// The longest glob a project may hold.
const MAX_GLOB_CHARS: usize = 256;

impl Glob {
    /// `pattern` as a glob; `field` names it in the error.
    pub fn parse(field: &str, pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() || pattern.chars().count() > MAX_GLOB_CHARS {
            return Err(format!(
                "`{field}`: {pattern:?} must be a glob of 1 to {MAX_GLOB_CHARS} characters, e.g. \"main\", \"release/*\" or \"services/api/**\""
            ));
        }
        if pattern.chars().any(|c| c.is_control()) {
            return Err(format!(
                "`{field}`: {pattern:?} holds a control character; globs are names with `*`, `**` and `?`"
            ));
        }
        Ok(Glob {
            pattern: pattern.chars().collect(),
        })
    }

    /// Whether `name` matches the whole glob.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // matched[j]: the pattern consumed so far matches name[..j].
        // One row per pattern position; `**` may take any run, `*` and
        // `?` any but `/`.
        let mut matched = vec![false; name.len() + 1];
        matched[0] = true;
        let mut i = 0;
        while i < self.pattern.len() {
            let mut next = vec![false; name.len() + 1];
            match self.pattern[i] {
                '*' if self.pattern.get(i + 1) == Some(&'*') => {
                    // `**/` also matches nothing at all (`a/**/b` ~ `a/b`).
                    let slash_follows = self.pattern.get(i + 2) == Some(&'/');
                    let mut reached = false;
                    for j in 0..=name.len() {
                        reached |= matched[j];
                        next[j] = reached;
                    }
                    i += 2;
                    if slash_follows {
                        // Either the `/` is matched literally next, or it
                        // is skipped along with the empty run.
                        let mut literal = vec![false; name.len() + 1];
                        for j in 0..name.len() {
                            if next[j] && name[j] == '/' {
                                literal[j + 1] = true;
                            }
                        }
                        for j in 0..=name.len() {
                            literal[j] |= matched[j];
                        }
                        next = literal;
                        i += 1;
                    }
                }
                '*' => {
                    let mut reached = false;
                    for j in 0..=name.len() {
                        reached = matched[j] || (reached && j > 0 && name[j - 1] != '/');
                        next[j] = reached;
                    }
                    i += 1;
                }
                '?' => {
                    for j in 0..name.len() {
                        next[j + 1] = matched[j] && name[j] != '/';
                    }
                    i += 1;
                }
                literal => {
                    for j in 0..name.len() {
                        next[j + 1] = matched[j] && name[j] == literal;
                    }
                    i += 1;
                }
            }
            matched = next;
        }
        matched[name.len()]
    }
}

/// What a build of a project is of: the commit, and the branch or tag it
/// was pushed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub commit: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
}

/// Placeholders a tag template may use.
const PLACEHOLDERS: [&str; 5] = ["{branch}", "{tag}", "{sha}", "{sha7}", "{number}"];

/// The tags the project's templates give for `target` and build `number`:
/// templates whose placeholder the target lacks are skipped, `latest` is
/// kept only for the default branch (unless the project asks for it on
/// every branch), branch and tag names become valid tag text (`/` → `-`),
/// and repeats are dropped.
pub fn render_tags(project: &ProjectRecord, target: &Target, number: u64) -> Vec<String> {
    let on_default = target.branch.as_deref() == Some(project.default_branch.as_str());
    let mut tags: Vec<String> = Vec::new();
    for template in &project.tags {
        if template == "latest" && !(on_default || project.latest_on_every_branch) {
            continue;
        }
        if template == "latest" && target.branch.is_none() {
            continue;
        }
        let mut text = template.clone();
        let values = [
            ("{branch}", target.branch.as_deref().map(tag_text)),
            ("{tag}", target.tag.as_deref().map(tag_text)),
            ("{sha}", Some(target.commit.clone())),
            (
                "{sha7}",
                Some(target.commit.chars().take(7).collect::<String>()),
            ),
            ("{number}", Some(number.to_string())),
        ];
        let mut skipped = false;
        for (placeholder, value) in values {
            if text.contains(placeholder) {
                match value {
                    Some(value) => text = text.replace(placeholder, &value),
                    None => skipped = true,
                }
            }
        }
        if skipped {
            continue;
        }
        let text: String = text.chars().take(128).collect();
        if !tags.contains(&text) {
            tags.push(text);
        }
    }
    tags
}

/// A branch or tag name as tag text: characters a tag cannot hold become
/// `-`, and a leading `.` or `-` becomes `_`.
fn tag_text(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
            '.' | '-' if i > 0 => c,
            '.' | '-' => '_',
            _ => '-',
        })
        .collect()
}

/// Check a project's tag templates: known placeholders only, and text
/// that makes a valid tag once filled in.
pub fn check_tag_templates(templates: &[String]) -> Result<(), String> {
    if templates.is_empty() {
        return Err("`tags` is empty; give at least one template (e.g. \"{sha7}\")".into());
    }
    for template in templates {
        let mut sample = template.clone();
        for placeholder in PLACEHOLDERS {
            sample = sample.replace(placeholder, "x");
        }
        if sample.contains('{') || sample.contains('}') {
            return Err(format!(
                "`tags`: {template:?} uses an unknown placeholder; the known ones are {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        kiln_api::validate::check_tags(std::slice::from_ref(&sample))
            .map_err(|e| format!("`tags`: template {template:?} does not make a valid tag: {e}"))?;
    }
    Ok(())
}

/// Whether a push builds the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Build(Target),
    /// Nothing to build, and why (the webhook's `ignored`).
    Ignore(String),
}

/// What a push of `event` means for `project`.
pub fn decide(project: &ProjectRecord, event: &push::PushEvent) -> Decision {
    let reference = event.reference.as_str();
    let (branch, tag) = if let Some(branch) = reference.strip_prefix("refs/heads/") {
        (Some(branch.to_string()), None)
    } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
        (None, Some(tag.to_string()))
    } else {
        return Decision::Ignore(format!(
            "{reference} is neither a branch (refs/heads/…) nor a tag (refs/tags/…)"
        ));
    };
    if event.deleted {
        return Decision::Ignore(format!("the push deleted {reference}; nothing to build"));
    }
    if let Some(branch) = &branch {
        if !project.branches.is_empty() && !matches_any(&project.branches, branch) {
            return Decision::Ignore(format!(
                "branch {branch} does not match {}",
                project.branches.join(", ")
            ));
        }
    }
    if let Some(tag) = &tag {
        match &project.tags_pattern {
            None => {
                return Decision::Ignore(format!(
                    "tag {tag}: this project builds no tags (set its `tagsPattern`, e.g. \"v*\")"
                ))
            }
            Some(pattern) if !matches_any(std::slice::from_ref(pattern), tag) => {
                return Decision::Ignore(format!("tag {tag} does not match {pattern}"))
            }
            Some(_) => {}
        }
    }
    if let (false, Some(changed)) = (project.paths.is_empty(), &event.changed_paths) {
        if !changed.iter().any(|path| matches_any(&project.paths, path)) {
            let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
            return Decision::Ignore(format!(
                "the push touched none of {} (it changed {}{})",
                project.paths.join(", "),
                if shown.is_empty() {
                    "no files".to_string()
                } else {
                    shown.join(", ")
                },
                if changed.len() > shown.len() {
                    format!(" and {} more", changed.len() - shown.len())
                } else {
                    String::new()
                }
            ));
        }
    }
    Decision::Build(Target {
        commit: event.after.clone(),
        branch,
        tag,
    })
}

fn matches_any(globs: &[String], name: &str) -> bool {
    globs
        .iter()
        .any(|g| Glob::parse("", g).map(|g| g.matches(name)).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::parse("t", p).unwrap()
    }

    #[test]
    fn a_star_stays_in_its_segment_and_a_double_star_crosses() {
        assert!(glob("main").matches("main"));
        assert!(!glob("main").matches("main2"));
        assert!(glob("release/*").matches("release/1.0"));
        assert!(!glob("release/*").matches("release/1.0/hotfix"));
        assert!(!glob("release/*").matches("releases/1"));
        assert!(glob("services/api/**").matches("services/api/src/main.rs"));
        assert!(!glob("services/api/**").matches("services/web/index.js"));
        assert!(glob("**/*.go").matches("cmd/tool/main.go"));
        assert!(glob("**/*.go").matches("main.go"));
        assert!(glob("a/**/b").matches("a/b"));
        assert!(glob("a/**/b").matches("a/x/y/b"));
        assert!(glob("v?.*").matches("v1.2"));
        assert!(!glob("v?.*").matches("v10.2"));
        assert!(glob("*").matches("feature"));
        assert!(!glob("*").matches("feature/x"));
        assert!(glob("**").matches("feature/x"));
    }

    fn project(tags: &[&str]) -> ProjectRecord {
        ProjectRecord {
            project_id: "p".into(),
            org: "o".into(),
            name: "api".into(),
            git_source: Default::default(),
            dockerfile: "Dockerfile".into(),
            builder: "buildkit".into(),
            profile: "medium".into(),
            build_args: Default::default(),
            secrets: vec![],
            secret_build_args: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            branches: vec!["main".into(), "release/*".into()],
            tags_pattern: Some("v*".into()),
            paths: vec![],
            auto_cancel_superseded: false,
            poll_interval_secs: 0,
            default_branch: "main".into(),
            latest_on_every_branch: false,
            signing: None,
            sealed_webhook_secret: String::new(),
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn templates_fill_in_what_the_push_has_and_latest_only_on_the_default_branch() {
        let p = project(&["{branch}", "{tag}", "{sha7}", "build-{number}", "latest"]);
        let on = |branch: Option<&str>, tag: Option<&str>| Target {
            commit: SHA.into(),
            branch: branch.map(str::to_string),
            tag: tag.map(str::to_string),
        };
        assert_eq!(
            render_tags(&p, &on(Some("main"), None), 4),
            ["main", "0123456", "build-4", "latest"]
        );
        assert_eq!(
            render_tags(&p, &on(Some("release/1.0"), None), 5),
            ["release-1.0", "0123456", "build-5"]
        );
        assert_eq!(
            render_tags(&p, &on(None, Some("v1.2.0")), 6),
            ["v1.2.0", "0123456", "build-6"]
        );
        let mut every = p.clone();
        every.latest_on_every_branch = true;
        assert!(render_tags(&every, &on(Some("dev"), None), 1).contains(&"latest".to_string()));
        assert_eq!(tag_text(".hidden/x"), "_hidden-x");
    }

    #[test]
    fn bad_templates_are_refused_with_the_known_placeholders() {
        assert!(check_tag_templates(&["{sha7}".into(), "v-{number}".into()]).is_ok());
        let unknown = check_tag_templates(&["{commit}".into()]).unwrap_err();
        assert!(unknown.contains("{sha7}"), "{unknown}");
        assert!(check_tag_templates(&["a b".into()]).is_err());
        assert!(check_tag_templates(&[]).is_err());
    }

    fn push(reference: &str, changed: Option<&[&str]>) -> push::PushEvent {
        push::PushEvent {
            reference: reference.into(),
            before: None,
            after: SHA.into(),
            deleted: false,
            pusher: None,
            commit_message: None,
            changed_paths: changed.map(|c| c.iter().map(|p| p.to_string()).collect()),
            default_branch: None,
        }
    }

    #[test]
    fn branch_tag_and_path_filters_say_why_a_push_builds_nothing() {
        let mut p = project(&["{sha7}"]);
        assert!(matches!(
            decide(&p, &push("refs/heads/main", None)),
            Decision::Build(_)
        ));
        assert_eq!(
            decide(&p, &push("refs/heads/feature/x", None)),
            Decision::Ignore("branch feature/x does not match main, release/*".into())
        );
        assert!(matches!(
            decide(&p, &push("refs/tags/v1", None)),
            Decision::Build(Target { tag: Some(_), .. })
        ));
        assert_eq!(
            decide(&p, &push("refs/tags/nightly", None)),
            Decision::Ignore("tag nightly does not match v*".into())
        );
        p.paths = vec!["services/api/**".into()];
        let ignored = decide(&p, &push("refs/heads/main", Some(&["web/index.js"])));
        assert!(
            matches!(&ignored, Decision::Ignore(why) if why.contains("web/index.js")),
            "{ignored:?}"
        );
        assert!(matches!(
            decide(
                &p,
                &push("refs/heads/main", Some(&["services/api/main.go"]))
            ),
            Decision::Build(_)
        ));
        let mut deleted = push("refs/heads/main", None);
        deleted.deleted = true;
        assert!(matches!(decide(&p, &deleted), Decision::Ignore(_)));
    }
}
