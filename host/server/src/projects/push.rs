//! A push delivery at a project's webhook: which sender it is from, whether
//! its signature holds, and the push it describes.
//!
//! | sender | told by | authenticated by | delivery id |
//! |---|---|---|---|
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` | `X-GitHub-Delivery` |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Token: <the secret>` | `Idempotency-Key`, else `X-Gitlab-Event-UUID` |
//! | Gitea / Forgejo | `X-Gitea-Event` / `X-Forgejo-Event` | `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>` | `X-Gitea-Delivery` / `X-Forgejo-Delivery` |
//! | anything else | `webhook-signature` | Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>` keyed by the `whsec_` secret's bytes, timestamp within 5 minutes | `webhook-id` |
//!
//! [`authenticate`] runs before the body is parsed at all, and compares in
//! constant time.

use base64::Engine as _;
use hmac::{Mac, SimpleHmac};
use hyper::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

type HmacSha256 = SimpleHmac<Sha256>;

/// How far a Standard Webhooks timestamp may be from now.
const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// Who sent a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    GitHub,
    GitLab,
    Gitea,
    /// Signed as Standard Webhooks sign (Kiln's own deliveries too).
    Generic,
}

impl Sender {
    pub fn as_str(self) -> &'static str {
        match self {
            Sender::GitHub => "GitHub",
            Sender::GitLab => "GitLab",
            Sender::Gitea => "Gitea",
            Sender::Generic => "Standard Webhooks",
        }
    }
}

/// A delivery whose signature held: who sent it, its id, and its event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub sender: Sender,
    pub id: String,
    /// The sender's event name (`push`, `Push Hook`...); `push` for generic.
    pub event: String,
}

/// Why a delivery was refused (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// A new webhook secret: `whsec_` and the base64 of 24 random bytes.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Check a delivery's signature (or token) against `secret`, before
/// anything reads its body. `now` is the Unix time.
pub fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<Delivery, Refused> {
    let refused = |m: String| Err(Refused(m));
    if let Some(event) = header(headers, "x-github-event") {
        let Some(given) = header(headers, "x-hub-signature-256") else {
            return refused("a GitHub delivery without `X-Hub-Signature-256`: set the webhook's secret to the project's webhook secret".into());
        };
        let valid = given
            .strip_prefix("sha256=")
            .and_then(|hex_sig| hex::decode(hex_sig).ok())
            .is_some_and(|sig| hmac(secret.as_bytes(), &[body]).verify_slice(&sig).is_ok());
        if !valid {
            return refused(
                "the `X-Hub-Signature-256` signature does not match this project's webhook secret"
                    .into(),
            );
        }
        return Ok(Delivery {
            sender: Sender::GitHub,
            id: header(headers, "x-github-delivery")
                .unwrap_or("")
                .to_string(),
            event: event.to_string(),
        });
    }
    if let Some(event) = header(headers, "x-gitlab-event") {
        let given = header(headers, "x-gitlab-token").unwrap_or("");
        // Digests compared, so the comparison's time says nothing about
        // how much of a guess was right.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(secret.as_bytes()) {
            return refused("the `X-Gitlab-Token` is not this project's webhook secret (set it as the webhook's secret token)".into());
        }
        let id = header(headers, "idempotency-key")
            .or_else(|| header(headers, "x-gitlab-event-uuid"))
            .unwrap_or("");
        return Ok(Delivery {
            sender: Sender::GitLab,
            id: id.to_string(),
            event: event.to_string(),
        });
    }
    let gitea = ["x-gitea-event", "x-forgejo-event"]
        .iter()
        .find_map(|name| header(headers, name));
    if let Some(event) = gitea {
        let given = header(headers, "x-gitea-signature")
            .or_else(|| header(headers, "x-forgejo-signature"))
            .unwrap_or("");
        let valid = hex::decode(given)
            .is_ok_and(|sig| hmac(secret.as_bytes(), &[body]).verify_slice(&sig).is_ok());
        if !valid {
            return refused(
                "the `X-Gitea-Signature` does not match this project's webhook secret".into(),
            );
        }
        let id = header(headers, "x-gitea-delivery")
            .or_else(|| header(headers, "x-forgejo-delivery"))
            .unwrap_or("");
        return Ok(Delivery {
            sender: Sender::Gitea,
            id: id.to_string(),
            event: event.to_string(),
        });
    }
    if let Some(signatures) = header(headers, "webhook-signature") {
        let id = header(headers, "webhook-id").unwrap_or("");
        let timestamp = header(headers, "webhook-timestamp").unwrap_or("");
        if id.is_empty() {
            return refused("a Standard Webhooks delivery needs a `webhook-id` header".into());
        }
        let Ok(sent) = timestamp.parse::<i64>() else {
            return refused(format!(
                "`webhook-timestamp` {timestamp:?} is not a Unix time in seconds"
            ));
        };
        if (now - sent).abs() > TIMESTAMP_TOLERANCE_SECS {
            return refused(format!(
                "`webhook-timestamp` {sent} is more than {TIMESTAMP_TOLERANCE_SECS} s from the server's time ({now}); sign deliveries as they are sent"
            ));
        }
        let key = secret_key_bytes(secret);
        let mac = hmac(
            &key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        let valid = signatures.split(' ').any(|signature| {
            signature
                .strip_prefix("v1,")
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .is_some_and(|sig| mac.clone().verify_slice(&sig).is_ok())
        });
        if !valid {
            return refused(
                "no `webhook-signature` (v1) matches this project's webhook secret".into(),
            );
        }
        return Ok(Delivery {
            sender: Sender::Generic,
            id: id.to_string(),
            event: "push".into(),
        });
    }
    refused("the delivery carries no signature: send it from GitHub (X-Hub-Signature-256), GitLab (X-Gitlab-Token), Gitea/Forgejo (X-Gitea-Signature) or signed as Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the project's webhook secret".into())
}

/// The HMAC key of a `whsec_` secret: the bytes its base64 encodes
/// (Standard Webhooks); any other secret is its own bytes.
pub fn secret_key_bytes(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// A push, as every sender's payload says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// The full ref pushed: `refs/heads/main`, `refs/tags/v1`.
    pub reference: String,
    /// The commit the ref pointed at before the push, when it existed.
    pub before: Option<String>,
    /// The commit the ref points at after the push.
    pub after: String,
    /// The push deleted the ref.
    pub deleted: bool,
    pub pusher: Option<String>,
    /// The head commit's message, first line.
    pub commit_message: Option<String>,
    /// Every path the push changed, when the payload lists them all.
    pub changed_paths: Option<Vec<String>>,
    /// The repository's default branch, when the payload says.
    pub default_branch: Option<String>,
}

/// What a delivery's body says: a push, or an event that is not one.
#[derive(Debug)]
pub enum Payload {
    Push(PushEvent),
    /// Not a push (a ping, an issue comment...): what it was.
    Other(String),
}

const ZERO_COMMIT: &str = "0000000000000000000000000000000000000000";

/// Read an authenticated delivery's body. `Err` says what is malformed.
pub fn parse(delivery: &Delivery, body: &[u8]) -> Result<Payload, String> {
    let is_push = match delivery.sender {
        Sender::GitHub | Sender::Gitea => delivery.event == "push",
        Sender::GitLab => matches!(delivery.event.as_str(), "Push Hook" | "Tag Push Hook"),
        Sender::Generic => true,
    };
    if !is_push {
        return Ok(Payload::Other(format!(
            "{} event {:?} is not a push",
            delivery.sender.as_str(),
            delivery.event
        )));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the push body is not JSON: {e}"))?;
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let reference = text("/ref").ok_or("the push body has no `ref`")?;
    let after = match delivery.sender {
        // GitLab's tag pushes carry the commit in `checkout_sha`.
        Sender::GitLab => text("/checkout_sha").or_else(|| text("/after")),
        _ => text("/after"),
    }
    .unwrap_or_else(|| ZERO_COMMIT.to_string());
    let deleted =
        value.get("deleted").and_then(Value::as_bool) == Some(true) || after == ZERO_COMMIT;
    let is_commit_id = after.len() == 40 && after.bytes().all(|b| b.is_ascii_hexdigit());
    if !deleted && !is_commit_id {
        return Err(format!(
            "the push's commit {after:?} is not a 40-digit commit id"
        ));
    }
    let pusher = match delivery.sender {
        Sender::GitHub => text("/pusher/name"),
        Sender::GitLab => text("/user_username").or_else(|| text("/user_name")),
        Sender::Gitea => text("/pusher/login").or_else(|| text("/pusher/username")),
        Sender::Generic => text("/pusher"),
    };
    let commits = value.get("commits").and_then(Value::as_array);
    let head_message = text("/head_commit/message").or_else(|| {
        commits?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(after.as_str()))?
            .get("message")?
            .as_str()
            .map(str::to_string)
    });
    let commit_message = match delivery.sender {
        Sender::Generic => text("/commitMessage"),
        _ => head_message,
    }
    .map(|m| m.lines().next().unwrap_or("").to_string());
    let default_branch = match delivery.sender {
        Sender::GitLab => text("/project/default_branch"),
        Sender::Generic => text("/defaultBranch"),
        _ => text("/repository/default_branch"),
    };
    let changed_paths = match delivery.sender {
        Sender::Generic => value
            .get("changedPaths")
            .and_then(Value::as_array)
            .map(|paths| {
                paths
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            }),
        _ => listed_paths(&value, commits),
    };
    let before = text("/before")
        .filter(|b| b.len() == 40 && b.bytes().all(|c| c.is_ascii_hexdigit()) && b != ZERO_COMMIT);
    Ok(Payload::Push(PushEvent {
        reference,
        before,
        after,
        deleted,
        pusher,
        commit_message,
        changed_paths,
        default_branch,
    }))
}

/// The paths the payload's commits list as added, modified or removed —
/// only when the payload lists every commit of the push (senders cap the
/// list: GitLab at 20, saying how many there were; a new branch may list
/// none): otherwise `None`, and the push is not filtered by path.
fn listed_paths(value: &Value, commits: Option<&Vec<Value>>) -> Option<Vec<String>> {
    let commits = commits?;
    if commits.is_empty() {
        return None;
    }
    let total = value
        .get("total_commits_count")
        .or_else(|| value.get("total_commits"))
        .and_then(Value::as_u64);
    if total.is_some_and(|total| total as usize > commits.len()) {
        return None;
    }
    // GitHub lists up to 2048 commits and says nothing when it cut.
    if commits.len() >= 2048 {
        return None;
    }
    let mut paths = Vec::new();
    for commit in commits {
        for list in ["added", "modified", "removed"] {
            // A commit without the lists cannot vouch for what it changed.
            let listed = commit.get(list)?.as_array()?;
            for path in listed.iter().filter_map(Value::as_str) {
                if !paths.iter().any(|p| p == path) {
                    paths.push(path.to_string());
                }
            }
        }
    }
    Some(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn hex_hmac(key: &[u8], body: &[u8]) -> String {
        hex::encode(hmac(key, &[body]).finalize().into_bytes())
    }

    #[test]
    fn github_and_gitea_sign_the_body_with_the_secret_text() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = format!("sha256={}", hex_hmac(SECRET.as_bytes(), body));
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", &good),
        ]);
        let delivery = authenticate(&h, body, SECRET, 0).unwrap();
        assert_eq!(
            (delivery.sender, delivery.id.as_str()),
            (Sender::GitHub, "d-1")
        );
        assert!(authenticate(&h, b"{}", SECRET, 0).is_err(), "another body");
        assert!(
            authenticate(&h, body, "whsec_other", 0).is_err(),
            "another secret"
        );
        let gitea = headers(&[
            ("x-gitea-event", "push"),
            ("x-gitea-signature", &hex_hmac(SECRET.as_bytes(), body)),
        ]);
        assert_eq!(
            authenticate(&gitea, body, SECRET, 0).unwrap().sender,
            Sender::Gitea
        );
    }

    #[test]
    fn standard_webhooks_sign_id_timestamp_and_body_with_the_decoded_key() {
        // The example in the Standard Webhooks specification's test vectors.
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let delivery = authenticate(&h, body, SECRET, 1614265330).unwrap();
        assert_eq!(delivery.sender, Sender::Generic);
        assert!(
            authenticate(&h, body, SECRET, 1614265330 + 600).is_err(),
            "stale"
        );
        assert!(authenticate(&h, b"{}", SECRET, 1614265330).is_err());
    }

    #[test]
    fn no_signature_is_refused_and_says_how_to_sign() {
        let refused = authenticate(&HeaderMap::new(), b"{}", SECRET, 0).unwrap_err();
        assert!(refused.0.contains("X-Hub-Signature-256"), "{}", refused.0);
        let gitlab = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "nope")]);
        assert!(authenticate(&gitlab, b"{}", SECRET, 0).is_err());
    }

    #[test]
    fn gitlab_payloads_capped_at_twenty_commits_do_not_vouch_for_paths() {
        let delivery = Delivery {
            sender: Sender::GitLab,
            id: "x".into(),
            event: "Push Hook".into(),
        };
        let sha = "a".repeat(40);
        let body = serde_json::json!({
            "ref": "refs/heads/main", "after": sha, "checkout_sha": sha,
            "user_username": "ada", "total_commits_count": 21,
            "commits": [{"id": sha, "message": "fix\n\nmore", "added": [], "modified": ["a"], "removed": []}],
            "project": {"default_branch": "main"}
        });
        let Payload::Push(push) = parse(&delivery, body.to_string().as_bytes()).unwrap() else {
            panic!("a push")
        };
        assert_eq!(push.changed_paths, None);
        assert_eq!(push.pusher.as_deref(), Some("ada"));
        assert_eq!(push.commit_message.as_deref(), Some("fix"));
        assert_eq!(push.default_branch.as_deref(), Some("main"));
    }
}
