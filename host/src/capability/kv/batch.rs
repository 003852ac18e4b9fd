//! `wharf:plugin/batch`: several keys in one round trip, the reads this
//! host may answer from its read cache (`capability::kv_cache`), and
//! several writes in one atomic step (one Lua script).

use std::collections::HashSet;

use crate::capability::kv::atomics::{decimal, increment_outcome};
use crate::capability::kv::{KvCtx, check_ttl, opt_num};
use crate::capability::kv_cache::Lookup;
use crate::engine::bindings::wharf::plugin::batch;
use crate::engine::bindings::{CapError, CapFailure};
use crate::storage::scripts::WRITE_MANY;

/// Most writes one `write-many` takes: one script holds Redis for all of them.
const MAX_WRITES: usize = 100;

impl batch::Host for KvCtx {
    async fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, CapFailure> {
        let full = self.batch(&keys)?;
        Ok(self.read_values(&full).await?)
    }

    async fn get_many_cached(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, CapFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full = self.batch(&keys)?;
        let cache = self.cache();
        let metrics = &self.backend().metrics;
        let ticket = match cache.lookup(self.ns(), &full) {
            Lookup::Hit(values) => {
                metrics.kv_cache_hits.inc();
                return Ok(values);
            }
            Lookup::Miss(ticket) => ticket,
        };
        metrics.kv_cache_misses.inc();
        if !ticket.can_fill() {
            // Nothing would be stored (cache off or not listening yet): a plain read.
            return Ok(self.read_values(&full).await?);
        }
        // Each key's PTTL rides along: a key that expires is not cached.
        let values: Vec<(Option<Vec<u8>>, i64)> = self
            .read_per_slot(&full, |pipe, k| {
                pipe.cmd("HGET").arg(k).arg("v").cmd("PTTL").arg(k);
            })
            .await?;
        cache.fill(ticket, &full, &values);
        Ok(values.into_iter().map(|(v, _)| v).collect())
    }

    async fn write_many(&mut self, writes: Vec<batch::Write>) -> Result<Vec<batch::Written>, CapFailure> {
        Ok(self.write_many_checked(writes).await?)
    }
}

impl KvCtx {
    /// `write-many`: every write checked (keys, values, expiries) before
    /// the one script that runs them all.
    async fn write_many_checked(&self, writes: Vec<batch::Write>) -> Result<Vec<batch::Written>, CapError> {
        if writes.len() > MAX_WRITES {
            return Err(CapError::Invalid(format!("at most {MAX_WRITES} writes at once")));
        }
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // One script holds Redis (and the replication stream) for all of it.
        let bytes: usize = writes
            .iter()
            .map(|w| match w {
                batch::Write::Set((_, v)) | batch::Write::SetIfAbsent((_, v, _)) => v.len(),
                _ => 0,
            })
            .sum();
        self.check_value_total(bytes)?;
        // One script: one slot, so one partition.
        self.one_partition(writes.iter().flat_map(keys_of))?;
        let first = keys_of(&writes[0])[0];
        self.note_partition(first).await?;
        let mut inv = WRITE_MANY.key(self.index(first));
        let (mut touched, mut counters, mut values) = (Vec::new(), HashSet::new(), HashSet::new());
        for w in &writes {
            match w {
                batch::Write::Set((key, value)) => {
                    self.check_value(value)?;
                    let k = self.key(key)?;
                    inv.key(&k).arg("s").arg(value.as_slice()).arg(key);
                    values.insert(k.clone());
                    touched.push(k);
                }
                batch::Write::SetIfAbsent((key, value, ttl_ms)) => {
                    self.check_value(value)?;
                    check_ttl(*ttl_ms)?;
                    let k = self.key(key)?;
                    inv.key(&k).arg("a").arg(value.as_slice()).arg(key).arg(ttl_ms.unwrap_or(0));
                    values.insert(k.clone());
                    touched.push(k);
                }
                batch::Write::Increment(i) => {
                    let k = self.key(&i.key)?;
                    let marker = i.once.as_deref().map(|m| self.key(m)).transpose()?;
                    inv.key(&k).key(marker.as_deref().unwrap_or(&k));
                    inv.arg("i").arg(i.delta).arg(opt_num(i.min)).arg(opt_num(i.max)).arg(&i.key);
                    inv.arg(i.once.as_deref().unwrap_or("")).arg(if marker.is_some() { "1" } else { "0" });
                    counters.insert(k.clone());
                    touched.extend(marker);
                    touched.push(k);
                }
                batch::Write::Delete(key) => {
                    let k = self.key(key)?;
                    inv.key(&k).arg("d").arg(key);
                    touched.push(k);
                }
            }
        }
        // The script checks each counter before writing anything; a value
        // set earlier in the same batch could spoil one half way.
        if let Some(both) = counters.intersection(&values).next() {
            let named = both.rsplit_once(":kv:").map_or(both.as_str(), |(_, k)| k);
            return Err(CapError::Invalid(format!("key {named:?} is both set and incremented in one write-many")));
        }
        let _drop_from_cache = self.cache().invalidate_on_drop(touched);
        let mut conn = self.backend().conn();
        let replies = self.backend().bounded(inv.invoke_async::<Vec<(i64, Vec<u8>)>>(&mut conn)).await?;
        if replies.len() != writes.len() {
            return Err(CapError::Internal(format!(
                "write-many answered {} of {} writes",
                replies.len(),
                writes.len()
            )));
        }
        writes.iter().zip(replies).map(|(w, (tag, value))| written(w, tag, value)).collect()
    }
}

/// The keys one write touches: its key, then an increment's marker.
fn keys_of(w: &batch::Write) -> Vec<&str> {
    match w {
        batch::Write::Set((k, _)) | batch::Write::SetIfAbsent((k, _, _)) | batch::Write::Delete(k) => vec![k.as_str()],
        batch::Write::Increment(i) => std::iter::once(i.key.as_str()).chain(i.once.as_deref()).collect(),
    }
}

/// One write's answer from the script's `{tag, value}`.
fn written(w: &batch::Write, tag: i64, value: Vec<u8>) -> Result<batch::Written, CapError> {
    Ok(match w {
        batch::Write::Set(_) => batch::Written::Set(decimal(&value)? as u64),
        batch::Write::SetIfAbsent(_) => batch::Written::SetIfAbsent(tag == 1),
        batch::Write::Increment(_) => batch::Written::Increment(increment_outcome(tag, value)?),
        batch::Write::Delete(_) => batch::Written::Delete(tag == 1),
    })
}
