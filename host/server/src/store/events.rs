//! Each organization's build events (queued, started, finished), kept for
//! `GET /v1/events`: a follower that reconnects with `Last-Event-ID` gets
//! what it missed, in order, and then what comes.

use super::{join_key, read_u64, Result, Store};

/// Events kept per organization: a follower that was away for longer than
/// it takes the organization to make this many events reloads instead
/// (the stream says so with a `reset` event).
pub const EVENTS_KEPT_PER_ORG: usize = 10_000;

/// How far past [`EVENTS_KEPT_PER_ORG`] an organization's events go before
/// its oldest are trimmed: a trim removes this many at once rather than one
/// on every event.
const TRIM_BATCH: usize = 256;

/// One stored event: its id (increasing, server-wide) and its JSON.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: u64,
    pub json: String,
}

impl Store {
    /// Keep `json` (a `kiln_api::BuildEvent`) as `org`'s next event and
    /// wake the followers; returns its id.
    pub fn append_event(&self, org: &str, json: &str) -> Result<u64> {
        let id = self.inner.db.generate_id()? + 1;
        let added = self
            .inner
            .events
            .insert(join_key(&[org.as_bytes(), &id.to_be_bytes()]), json)?
            .is_none();
        let count = if added {
            self.inner.events_per_org.add(org, 1)
        } else {
            self.inner.events_per_org.get(org)
        };
        if count >= EVENTS_KEPT_PER_ORG + TRIM_BATCH {
            self.trim_events(org)?;
        }
        self.inner.event_ids.send_replace(id);
        Ok(id)
    }

    /// Remove `org`'s oldest events down to [`EVENTS_KEPT_PER_ORG`]: a walk
    /// forward over just the keys removed. If another trim is under way,
    /// this one is left to the next event (the count stays over the mark).
    fn trim_events(&self, org: &str) -> Result<()> {
        let Ok(_trimming) = self.inner.events_trim.try_lock() else {
            return Ok(());
        };
        let excess = self
            .inner
            .events_per_org
            .get(org)
            .saturating_sub(EVENTS_KEPT_PER_ORG);
        let prefix = join_key(&[org.as_bytes(), b""]);
        for key in self.inner.events.scan_prefix(&prefix).keys().take(excess) {
            if self.inner.events.remove(key?)?.is_some() {
                self.inner.events_per_org.add(org, -1);
            }
        }
        Ok(())
    }

    /// Up to `limit` of `org`'s events after id `after`, oldest first.
    pub fn events_after(&self, org: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let start = join_key(&[org.as_bytes(), &(after.saturating_add(1)).to_be_bytes()]);
        let end = join_key(&[org.as_bytes(), &u64::MAX.to_be_bytes()]);
        let prefix_len = org.len() + 1;
        let mut out = Vec::new();
        for entry in self.inner.events.range(start..=end).take(limit) {
            let (key, value) = entry?;
            out.push(StoredEvent {
                id: read_u64(&key[prefix_len..]),
                json: String::from_utf8_lossy(&value).into_owned(),
            });
        }
        Ok(out)
    }

    /// Whether events of `org` after `after` may have been trimmed away:
    /// `after` is older than the oldest one kept, and some were trimmed.
    pub fn events_lost_after(&self, org: &str, after: u64) -> Result<bool> {
        let prefix = join_key(&[org.as_bytes(), b""]);
        let mut kept = self.inner.events.scan_prefix(&prefix).keys();
        let Some(oldest) = kept.next().transpose()? else {
            return Ok(false);
        };
        let oldest = read_u64(&oldest[prefix.len()..]);
        if after + 1 >= oldest {
            return Ok(false);
        }
        Ok(self.inner.events_per_org.get(org) >= EVENTS_KEPT_PER_ORG)
    }

    /// The newest event id, server-wide; changes on every event.
    pub fn event_ids(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.event_ids.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_per_organization_in_order_and_trimmed_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut ours = Vec::new();
        for i in 0..EVENTS_KEPT_PER_ORG + 600 {
            ours.push(store.append_event("a", &format!("{{\"n\":{i}}}")).unwrap());
            if i % 1000 == 0 {
                store.append_event("b", "{\"theirs\":true}").unwrap();
            }
        }
        assert_eq!(
            *store.event_ids().borrow(),
            store.inner.db.generate_id().unwrap()
        );
        // Every event after a kept one, in order, and only this
        // organization's.
        let middle = ours[ours.len() - 5];
        let after: Vec<u64> = store
            .events_after("a", middle, 100)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(after, ours[ours.len() - 4..]);
        assert_eq!(store.events_after("b", 0, 100).unwrap().len(), 11);
        // Trimmed to about the newest EVENTS_KEPT_PER_ORG (trimming runs
        // TRIM_BATCH events past that), and a resume from before them says
        // so.
        let kept = store.events_after("a", 0, usize::MAX).unwrap();
        assert!(
            (EVENTS_KEPT_PER_ORG..EVENTS_KEPT_PER_ORG + TRIM_BATCH).contains(&kept.len()),
            "{} kept",
            kept.len()
        );
        assert_eq!(kept.last().unwrap().id, *ours.last().unwrap());
        assert!(store.events_lost_after("a", 0).unwrap());
        assert!(!store.events_lost_after("a", middle).unwrap());
        assert!(
            !store.events_lost_after("b", 0).unwrap(),
            "b's were never trimmed"
        );
    }

    /// Issue 12: the counts trimming goes by are taken again when the store
    /// opens, so a restart neither forgets events it should trim nor trims
    /// what it should keep.
    #[test]
    fn issue_12_event_counts_survive_a_restart_and_trimming_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let before_restart = EVENTS_KEPT_PER_ORG + TRIM_BATCH - 10;
        {
            let store = Store::open(&path).unwrap();
            for i in 0..before_restart {
                store.append_event("a", &format!("{{\"n\":{i}}}")).unwrap();
            }
            store.append_event("b", "{}").unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.inner.events_per_org.get("a"), before_restart);
        assert_eq!(store.inner.events_per_org.get("b"), 1);
        for i in 0..20 {
            store
                .append_event("a", &format!("{{\"after\":{i}}}"))
                .unwrap();
        }
        let kept = store.events_after("a", 0, usize::MAX).unwrap();
        assert_eq!(
            kept.len(),
            EVENTS_KEPT_PER_ORG + 10,
            "trimmed once, past the mark"
        );
        assert_eq!(store.inner.events_per_org.get("a"), kept.len());
        assert!(kept.last().unwrap().json.contains("\"after\":19"));
        assert_eq!(store.events_after("b", 0, 10).unwrap().len(), 1);
    }
}
