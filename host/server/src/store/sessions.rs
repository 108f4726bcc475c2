//! The dashboard's sign-in sessions: a browser signs in with a token once
//! and holds a random session id in an HttpOnly cookie; the token itself
//! stays out of the browser. A session lives while its token does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{decode, encode, Result, Store, TokenRecord};

/// A signed-in browser. Stored under the SHA-256 of its session id, so the
/// store holds nothing a cookie could be made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub org: String,
    pub admin: bool,
    /// The SHA-256 (hex) of the token signed in with: the session ends
    /// when that token is revoked.
    pub token_sha256: String,
    /// What state-changing requests must carry in `X-Kiln-CSRF`.
    pub csrf: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
}

fn session_key(session_id: &str) -> Vec<u8> {
    Sha256::digest(session_id.as_bytes()).to_vec()
}

impl Store {
    pub fn put_session(&self, session_id: &str, record: &SessionRecord) -> Result<()> {
        self.inner
            .sessions
            .insert(session_key(session_id), encode(record))?;
        Ok(())
    }

    /// The session, while it has not expired and its token is valid; an
    /// expired or orphaned one is removed on the way.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        let key = session_key(session_id);
        let Some(bytes) = self.inner.sessions.get(&key)? else {
            return Ok(None);
        };
        let record: SessionRecord = decode(b"session", &bytes)?;
        let token_alive = hex::decode(&record.token_sha256)
            .ok()
            .map(|hash| self.inner.tokens.get(hash))
            .transpose()?
            .flatten()
            .is_some();
        if record.expire_time <= Utc::now() || !token_alive {
            self.inner.sessions.remove(&key)?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Sign a session out; open streams opened with it end too.
    pub fn remove_session(&self, session_id: &str) -> Result<()> {
        self.inner.sessions.remove(session_key(session_id))?;
        self.inner.revocations.send_modify(|count| *count += 1);
        Ok(())
    }

    /// The record of `token` and its hash, for a new session.
    pub fn token_for_session(&self, token: &str) -> Result<Option<(TokenRecord, String)>> {
        Ok(self
            .token(token)?
            .map(|record| (record, hex::encode(super::token_hash(token)))))
    }

    /// Remove sessions that have expired (the collector's sweep); with
    /// `dry_run`, only count them.
    pub fn prune_sessions(&self, dry_run: bool) -> Result<usize> {
        let now = Utc::now();
        let mut removed = 0;
        for entry in self.inner.sessions.iter() {
            let (key, value) = entry?;
            let expired = decode::<SessionRecord>(b"session", &value)
                .map(|s| s.expire_time <= now)
                .unwrap_or(true);
            if expired {
                if !dry_run {
                    self.inner.sessions.remove(key)?;
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}
