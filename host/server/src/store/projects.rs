//! Projects and the push deliveries their webhooks answered.

use super::{decode, encode, join_key, update_json, DeliveryRecord, ProjectRecord, Result, Store};

/// How long a delivery's claim holds without an answer: handling a push
/// takes milliseconds, so an older claim was left by a host that died.
pub const STALE_CLAIM: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl Store {
    /// Store a new project; `false` when its organization already has a
    /// project of that name (nothing is stored then).
    pub fn create_project(&self, record: &ProjectRecord) -> Result<bool> {
        let name_key = join_key(&[record.org.as_bytes(), record.name.as_bytes()]);
        // The name is claimed first: two creates of one name race on it,
        // and the loser stores nothing.
        let claimed = self.inner.projects_by_org.compare_and_swap(
            &name_key,
            None::<&[u8]>,
            Some(record.project_id.as_bytes()),
        )?;
        if claimed.is_err() {
            return Ok(false);
        }
        self.inner
            .projects
            .insert(record.project_id.as_bytes(), encode(record))?;
        Ok(true)
    }

    /// The project with this id, whatever its organization (a webhook
    /// names only the project).
    pub fn project(&self, project_id: &str) -> Result<Option<ProjectRecord>> {
        self.inner
            .projects
            .get(project_id)?
            .map(|v| decode(project_id.as_bytes(), &v))
            .transpose()
    }

    /// The project with this id if it belongs to `org`.
    pub fn project_for_org(&self, org: &str, project_id: &str) -> Result<Option<ProjectRecord>> {
        Ok(self.project(project_id)?.filter(|p| p.org == org))
    }

    /// An organization's projects, by name.
    pub fn projects(&self, org: &str) -> Result<Vec<ProjectRecord>> {
        let mut out = Vec::new();
        for entry in self
            .inner
            .projects_by_org
            .scan_prefix(join_key(&[org.as_bytes(), b""]))
        {
            let (_, id) = entry?;
            if let Some(project) = self.project(&String::from_utf8_lossy(&id))? {
                out.push(project);
            }
        }
        Ok(out)
    }

    /// Apply `change` to a stored project atomically; the new record, or
    /// `None` when there is no such project.
    pub fn update_project(
        &self,
        project_id: &str,
        change: impl FnMut(&mut ProjectRecord),
    ) -> Result<Option<ProjectRecord>> {
        update_json(&self.inner.projects, project_id, change)
    }

    /// Remove a project and the deliveries it answered. Its builds stay
    /// (they are history), still carrying its id.
    pub fn delete_project(&self, record: &ProjectRecord) -> Result<()> {
        self.inner
            .projects_by_org
            .remove(join_key(&[record.org.as_bytes(), record.name.as_bytes()]))?;
        self.inner.projects.remove(record.project_id.as_bytes())?;
        self.inner
            .project_refs
            .remove(record.project_id.as_bytes())?;
        let prefix = join_key(&[record.project_id.as_bytes(), b""]);
        for key in self.inner.deliveries.scan_prefix(&prefix).keys() {
            self.inner.deliveries.remove(key?)?;
        }
        Ok(())
    }

    /// Every project (the poller walks them).
    pub fn all_projects(&self) -> Result<Vec<ProjectRecord>> {
        self.inner
            .projects
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The refs polling saw last for a project (ref → commit), if it has
    /// polled yet.
    pub fn project_refs(
        &self,
        project_id: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        self.inner
            .project_refs
            .get(project_id)?
            .map(|v| decode(project_id.as_bytes(), &v))
            .transpose()
    }

    pub fn put_project_refs(
        &self,
        project_id: &str,
        refs: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.inner.project_refs.insert(project_id, encode(refs))?;
        Ok(())
    }

    /// Claim a push delivery for handling: `Ok(None)` when it is new (the
    /// caller handles it and then calls [`Store::answer_delivery`]), else
    /// what was kept for it (`status` 0 while another request handles it).
    /// A claim older than [`STALE_CLAIM`] was left by a host that died
    /// handling it: it is taken over, so the sender's retry is not lost.
    pub fn claim_delivery(
        &self,
        project_id: &str,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRecord>> {
        let key = join_key(&[project_id.as_bytes(), delivery_id.as_bytes()]);
        let now = chrono::Utc::now();
        let placeholder = encode(&DeliveryRecord {
            status: 0,
            answer: kiln_api::PushAnswer {
                build_ids: Vec::new(),
                ignored: None,
            },
            receive_time: now,
        });
        let mut expected: Option<sled::IVec> = None;
        loop {
            let swapped = self.inner.deliveries.compare_and_swap(
                &key,
                expected.as_ref(),
                Some(placeholder.clone()),
            )?;
            let Err(existing) = swapped else {
                return Ok(None);
            };
            let Some(current) = existing.current else {
                expected = None;
                continue;
            };
            let record: DeliveryRecord = decode(&key, &current)?;
            if record.status == 0 && now - record.receive_time > STALE_CLAIM {
                expected = Some(current);
                continue;
            }
            return Ok(Some(record));
        }
    }

    /// Keep the answer to a claimed delivery.
    pub fn answer_delivery(
        &self,
        project_id: &str,
        delivery_id: &str,
        record: &DeliveryRecord,
    ) -> Result<()> {
        let key = join_key(&[project_id.as_bytes(), delivery_id.as_bytes()]);
        self.inner.deliveries.insert(key, encode(record))?;
        Ok(())
    }

    /// Give up a claimed delivery (its handling failed): a retry of it is
    /// handled afresh.
    pub fn release_delivery(&self, project_id: &str, delivery_id: &str) -> Result<()> {
        let key = join_key(&[project_id.as_bytes(), delivery_id.as_bytes()]);
        self.inner.deliveries.remove(key)?;
        Ok(())
    }

    /// Delivery records received before `cutoff`, removed too unless
    /// `dry_run` (senders redeliver within hours or days; see
    /// [`super::DELIVERY_KEEP`]). Returns how many.
    pub fn prune_deliveries(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<u64> {
        let mut pruned = 0;
        for entry in self.inner.deliveries.iter() {
            let (key, value) = entry?;
            let record: DeliveryRecord = decode(&key, &value)?;
            if record.receive_time < cutoff
                && (dry_run
                    || self
                        .inner
                        .deliveries
                        .compare_and_swap(&key, Some(&value), None::<&[u8]>)?
                        .is_ok())
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_claimed_once_and_a_dead_hosts_claim_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.claim_delivery("p", "d").unwrap().is_none());
        let held = store.claim_delivery("p", "d").unwrap().expect("claimed");
        assert_eq!(held.status, 0, "another request handles it");
        // A claim a killed host left a while ago.
        let left = DeliveryRecord {
            receive_time: chrono::Utc::now() - STALE_CLAIM - chrono::TimeDelta::seconds(1),
            ..held
        };
        store.answer_delivery("p", "d", &left).unwrap();
        assert!(
            store.claim_delivery("p", "d").unwrap().is_none(),
            "taken over"
        );
        let answered = DeliveryRecord {
            status: 202,
            ..left
        };
        store.answer_delivery("p", "d", &answered).unwrap();
        assert_eq!(store.claim_delivery("p", "d").unwrap().unwrap().status, 202);
    }
}
