//! Repository URLs: which are accepted, and the host a permission and a
//! stored credential are looked up by.

use super::GitError;

/// A checked repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    raw: String,
    /// `https`, `http`, `git`, `ssh` or `file`.
    pub scheme: String,
    /// Lowercase host name without port; empty for `file://`.
    pub host: String,
}

/// What the `git` permission lists for local repositories (they have no host).
/// The `git` permission entry for local repositories (the runtime's vocabulary).
pub use kiln_plugin_runtime::capabilities::FILE_PERMISSION;

impl RepoUrl {
    /// Parse and check `raw`: a scheme Kiln fetches over and no password
    /// inside the URL (credentials belong in the organization's secrets,
    /// where they are encrypted and masked; a URL is stored and shown).
    pub fn parse(raw: &str) -> Result<Self, GitError> {
        let invalid = |reason: &str| GitError::InvalidUrl {
            url: redact(raw),
            reason: reason.to_string(),
        };
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if raw.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid("it contains spaces or control characters"));
        }
        let parsed =
            gix::url::parse(gix::bstr::BStr::new(raw)).map_err(|e| invalid(&format!("{e}")))?;
        let scheme = parsed.scheme.as_str().to_string();
        if !matches!(scheme.as_str(), "https" | "http" | "git" | "ssh" | "file") {
            return Err(invalid(&format!(
                "the scheme `{scheme}` is not supported; use https://, http://, git://, ssh:// or file://"
            )));
        }
        if parsed.password().is_some() {
            return Err(invalid(
                "it contains a password; save git credentials for the host instead (PUT /v1/secrets gitCredentials) and give the URL without them",
            ));
        }
        let host = parsed.host().unwrap_or_default().to_ascii_lowercase();
        if scheme != "file" && host.is_empty() {
            return Err(invalid("it has no host"));
        }
        Ok(RepoUrl {
            raw: raw.to_string(),
            scheme,
            host,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The URL without any user name, fit for logs and records.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }

    /// `message` with the raw URL replaced by the redacted one.
    pub fn redact_in(&self, message: &str) -> String {
        message.replace(&self.raw, &self.redacted())
    }

    /// What a `git` permission entry must match: the host, or
    /// [`FILE_PERMISSION`] for local repositories.
    pub fn permission_subject(&self) -> &str {
        if self.scheme == "file" {
            FILE_PERMISSION
        } else {
            &self.host
        }
    }

    /// Whether credentials may be sent to this URL: over an encrypted
    /// transport, or in clear text only to this machine (a test or a
    /// forge on loopback), never across a network.
    pub fn may_carry_credentials(&self) -> bool {
        match self.scheme.as_str() {
            "http" => crate::config::is_loopback_host(&self.host),
            "https" | "ssh" => true,
            _ => false,
        }
    }

    /// Resolve a submodule URL, which may be relative (`../lib.git`) to
    /// this repository's URL.
    pub fn join(&self, relative: &str) -> Result<RepoUrl, GitError> {
        if !(relative.starts_with("./") || relative.starts_with("../")) {
            return RepoUrl::parse(relative);
        }
        let mut base: Vec<&str> = self.raw.trim_end_matches('/').split('/').collect();
        for part in relative.split('/') {
            match part {
                "." | "" => {}
                ".." => {
                    // Never climb into the scheme and host part.
                    if base.len() <= 3 {
                        return Err(GitError::InvalidUrl {
                            url: relative.into(),
                            reason: format!("it climbs above the host of {}", self.redacted()),
                        });
                    }
                    base.pop();
                }
                other => base.push(other),
            }
        }
        RepoUrl::parse(&base.join("/"))
    }
}

/// `scheme://user@host/...` → `scheme://host/...`.
fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_hosts_extracted() {
        let url = RepoUrl::parse("https://GitLab.example.com:8443/team/app.git").unwrap();
        assert_eq!(url.host, "gitlab.example.com");
        assert_eq!(url.permission_subject(), "gitlab.example.com");
        let local = RepoUrl::parse("file:///srv/repos/app.git").unwrap();
        assert_eq!(local.permission_subject(), FILE_PERMISSION);
        for bad in [
            "",
            "ftp://example.com/r.git",
            "https://user:hunter2@example.com/r.git",
            "https://exa mple.com/r.git",
        ] {
            let error = RepoUrl::parse(bad).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(error.contains("is not valid"), "{error}");
        }
        assert!(RepoUrl::parse("http://127.0.0.1:8080/r")
            .unwrap()
            .may_carry_credentials());
        assert!(!RepoUrl::parse("http://git.example.com/r")
            .unwrap()
            .may_carry_credentials());
        assert!(RepoUrl::parse("https://git.example.com/r")
            .unwrap()
            .may_carry_credentials());
        let with_user = RepoUrl::parse("https://ci@example.com/r.git").unwrap();
        assert_eq!(with_user.redacted(), "https://example.com/r.git");
    }

    #[test]
    fn relative_submodule_urls_resolve_against_the_parent() {
        let parent = RepoUrl::parse("git://127.0.0.1:9418/team/app.git").unwrap();
        assert_eq!(
            parent.join("../lib.git").unwrap().as_str(),
            "git://127.0.0.1:9418/team/lib.git"
        );
        assert_eq!(
            parent.join("./vendor/x.git").unwrap().as_str(),
            "git://127.0.0.1:9418/team/app.git/vendor/x.git"
        );
        assert!(parent.join("../../../etc.git").is_err());
        assert_eq!(
            parent.join("https://example.com/x.git").unwrap().host,
            "example.com"
        );
    }
}
