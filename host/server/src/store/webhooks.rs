//! Completion webhooks and their durable delivery queue.

use chrono::{DateTime, Utc};

use super::{decode, encode, join_key, OutboundDelivery, Result, Store, WebhookRecord};

/// A delivery whose attempt is due: where its due entry is, and which.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    key: Vec<u8>,
    pub webhook_id: String,
    pub delivery_id: String,
}

fn due_key(at: DateTime<Utc>, webhook_id: &str, delivery_id: &str) -> Vec<u8> {
    let ms = at.timestamp_millis().max(0) as u64;
    join_key(&[
        &ms.to_be_bytes(),
        webhook_id.as_bytes(),
        delivery_id.as_bytes(),
    ])
}

impl Store {
    pub fn create_webhook(&self, record: &WebhookRecord) -> Result<()> {
        self.inner
            .webhooks
            .insert(record.webhook_id.as_bytes(), encode(record))?;
        self.inner.webhooks_by_org.insert(
            join_key(&[record.org.as_bytes(), record.webhook_id.as_bytes()]),
            &[],
        )?;
        Ok(())
    }

    pub fn webhook(&self, webhook_id: &str) -> Result<Option<WebhookRecord>> {
        self.inner
            .webhooks
            .get(webhook_id)?
            .map(|v| decode(webhook_id.as_bytes(), &v))
            .transpose()
    }

    /// The webhook with this id if it belongs to `org`.
    pub fn webhook_for_org(&self, org: &str, webhook_id: &str) -> Result<Option<WebhookRecord>> {
        Ok(self.webhook(webhook_id)?.filter(|w| w.org == org))
    }

    /// An organization's webhooks, oldest first.
    pub fn webhooks(&self, org: &str) -> Result<Vec<WebhookRecord>> {
        let prefix = join_key(&[org.as_bytes(), b""]);
        let mut out = Vec::new();
        for key in self.inner.webhooks_by_org.scan_prefix(&prefix).keys() {
            let key = key?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(webhook) = self.webhook(&id)? {
                out.push(webhook);
            }
        }
        out.sort_by_key(|w| w.create_time);
        Ok(out)
    }

    /// Remove a webhook and its deliveries (attempts due stop).
    pub fn delete_webhook(&self, record: &WebhookRecord) -> Result<()> {
        self.inner.webhooks_by_org.remove(join_key(&[
            record.org.as_bytes(),
            record.webhook_id.as_bytes(),
        ]))?;
        self.inner.webhooks.remove(record.webhook_id.as_bytes())?;
        let prefix = join_key(&[record.webhook_id.as_bytes(), b""]);
        for entry in self.inner.outbound.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let delivery: OutboundDelivery = decode(&key, &value)?;
            if let Some(at) = delivery.next_attempt_time {
                self.inner.outbound_due.remove(due_key(
                    at,
                    &delivery.webhook_id,
                    &delivery.delivery_id,
                ))?;
            }
            self.inner.outbound.remove(key)?;
        }
        Ok(())
    }

    /// A new delivery id: `msg_` and a number that grows with time, so a
    /// webhook's deliveries sort by creation.
    pub fn next_delivery_id(&self) -> Result<String> {
        Ok(format!("msg_{:020}", self.inner.db.generate_id()?))
    }

    /// Store a delivery as it now is, and its due entry when it has a next
    /// attempt. (The caller removed the old due entry: [`Store::claim_due`].)
    pub fn put_outbound(&self, delivery: &OutboundDelivery) -> Result<()> {
        self.inner.outbound.insert(
            join_key(&[
                delivery.webhook_id.as_bytes(),
                delivery.delivery_id.as_bytes(),
            ]),
            encode(delivery),
        )?;
        if let Some(at) = delivery.next_attempt_time {
            self.inner.outbound_due.insert(
                due_key(at, &delivery.webhook_id, &delivery.delivery_id),
                &[],
            )?;
        }
        Ok(())
    }

    pub fn outbound(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<OutboundDelivery>> {
        let key = join_key(&[webhook_id.as_bytes(), delivery_id.as_bytes()]);
        self.inner
            .outbound
            .get(&key)?
            .map(|v| decode(&key, &v))
            .transpose()
    }

    /// A webhook's deliveries, newest first, at most `limit`.
    pub fn outbound_for(&self, webhook_id: &str, limit: usize) -> Result<Vec<OutboundDelivery>> {
        let prefix = join_key(&[webhook_id.as_bytes(), b""]);
        let mut out = Vec::new();
        for entry in self.inner.outbound.scan_prefix(&prefix).rev().take(limit) {
            let (key, value) = entry?;
            out.push(decode(&key, &value)?);
        }
        Ok(out)
    }

    /// Deliveries due at `now` or before, soonest first, at most `limit`;
    /// and when the next one after them is due, if any.
    pub fn due_outbound(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<DueDelivery>, Option<DateTime<Utc>>)> {
        let mut due = Vec::new();
        for key in self.inner.outbound_due.iter().keys() {
            let key = key?;
            let ms = u64::from_be_bytes(key[..8].try_into().expect("due keys start with 8 bytes"));
            let at = DateTime::from_timestamp_millis(ms as i64).unwrap_or(now);
            if at > now || due.len() >= limit {
                return Ok((due, Some(at)));
            }
            let mut parts = key[9..].splitn(2, |b| *b == 0);
            let webhook_id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let delivery_id =
                String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            due.push(DueDelivery {
                key: key.to_vec(),
                webhook_id,
                delivery_id,
            });
        }
        Ok((due, None))
    }

    /// Take a due delivery for an attempt: `false` when another took it.
    pub fn claim_due(&self, due: &DueDelivery) -> Result<bool> {
        Ok(self.inner.outbound_due.remove(&due.key)?.is_some())
    }

    /// Move a delivery's next attempt (a redelivery): its old due entry,
    /// if any, goes.
    pub fn reschedule_outbound(
        &self,
        old: &OutboundDelivery,
        new: &OutboundDelivery,
    ) -> Result<()> {
        if let Some(at) = old.next_attempt_time {
            self.inner
                .outbound_due
                .remove(due_key(at, &old.webhook_id, &old.delivery_id))?;
        }
        self.put_outbound(new)
    }

    /// At start-up: a pending delivery whose due entry was taken by an
    /// attempt the host did not finish (it was killed) is due again now.
    /// Returns how many.
    pub fn recover_outbound(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut recovered = 0;
        for entry in self.inner.outbound.iter() {
            let (key, value) = entry?;
            let mut delivery: OutboundDelivery = decode(&key, &value)?;
            if delivery.status != kiln_api::DeliveryStatus::Pending {
                continue;
            }
            let at = delivery.next_attempt_time.unwrap_or(now);
            if self.inner.outbound_due.contains_key(due_key(
                at,
                &delivery.webhook_id,
                &delivery.delivery_id,
            ))? {
                continue;
            }
            delivery.next_attempt_time = Some(now);
            self.put_outbound(&delivery)?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Finished deliveries (succeeded or given up) created before
    /// `cutoff`, removed too unless `dry_run`. Returns how many.
    pub fn prune_outbound(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<u64> {
        let mut pruned = 0;
        for entry in self.inner.outbound.iter() {
            let (key, value) = entry?;
            let delivery: OutboundDelivery = decode(&key, &value)?;
            if delivery.status == kiln_api::DeliveryStatus::Pending
                || delivery.create_time >= cutoff
            {
                continue;
            }
            // Only if unchanged: a redelivery made it pending again.
            if dry_run
                || self
                    .inner
                    .outbound
                    .compare_and_swap(&key, Some(&value), None::<&[u8]>)?
                    .is_ok()
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
    use kiln_api::DeliveryStatus;

    fn delivery(store: &Store, status: DeliveryStatus, age_days: i64) -> OutboundDelivery {
        let created = Utc::now() - chrono::TimeDelta::days(age_days);
        OutboundDelivery {
            delivery_id: store.next_delivery_id().unwrap(),
            webhook_id: "w".into(),
            event_type: "build.succeeded".into(),
            build_id: "b".into(),
            body: "{}".into(),
            status,
            attempts: 1,
            create_time: created,
            give_up_time: created,
            next_attempt_time: (status == DeliveryStatus::Pending).then_some(created),
            last_attempt: None,
        }
    }

    #[test]
    fn due_deliveries_come_soonest_first_and_only_finished_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old_done = delivery(&store, DeliveryStatus::Succeeded, 10);
        let old_pending = delivery(&store, DeliveryStatus::Pending, 10);
        let new_failed = delivery(&store, DeliveryStatus::Failed, 1);
        for d in [&old_done, &old_pending, &new_failed] {
            store.put_outbound(d).unwrap();
        }
        let (due, next) = store.due_outbound(Utc::now(), 10).unwrap();
        assert_eq!(due.len(), 1, "only the pending one is due");
        assert_eq!(due[0].delivery_id, old_pending.delivery_id);
        assert!(next.is_none());
        assert!(store.claim_due(&due[0]).unwrap());
        assert!(!store.claim_due(&due[0]).unwrap(), "claimed once");

        let cutoff = Utc::now() - chrono::TimeDelta::days(7);
        assert_eq!(store.prune_outbound(cutoff, true).unwrap(), 1);
        assert_eq!(
            store.outbound_for("w", 10).unwrap().len(),
            3,
            "a dry run keeps all"
        );
        assert_eq!(store.prune_outbound(cutoff, false).unwrap(), 1);
        let left: Vec<String> = store
            .outbound_for("w", 10)
            .unwrap()
            .into_iter()
            .map(|d| d.delivery_id)
            .collect();
        assert_eq!(left, [new_failed.delivery_id, old_pending.delivery_id]);
        // A claimed delivery whose attempt never finished is due again.
        assert_eq!(store.recover_outbound(Utc::now()).unwrap(), 1);
        assert_eq!(store.due_outbound(Utc::now(), 10).unwrap().0.len(), 1);
    }
}
