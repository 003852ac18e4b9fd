//! `wharf:plugin/batch`: several keys in one round trip, and the reads this
//! host may answer from its read cache (`capability::kv_cache`).

use crate::capability::kv::KvCtx;
use crate::capability::kv_cache::Lookup;
use crate::engine::bindings::CapFailure;
use crate::engine::bindings::wharf::plugin::batch;

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
        let mut pipe = redis::pipe();
        let mut conn = self.backend().conn();
        for k in &full {
            pipe.cmd("HGET").arg(k).arg("v").cmd("PTTL").arg(k);
        }
        let values = self.backend().bounded(pipe.query_async::<Vec<(Option<Vec<u8>>, i64)>>(&mut conn)).await?;
        cache.fill(ticket, &full, &values);
        Ok(values.into_iter().map(|(v, _)| v).collect())
    }
}
