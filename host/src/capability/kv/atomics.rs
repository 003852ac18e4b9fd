//! `wharf:plugin/atomics`: read-modify-write steps on one key, each one Lua
//! script.

use crate::capability::kv::{KvCtx, cas_outcome, opt_num};
use crate::engine::bindings::wharf::plugin::atomics;
use crate::engine::bindings::{CapError, CapFailure};
use crate::storage::scripts::{COMPARE_AND_SWAP, INCREMENT};

impl atomics::Host for KvCtx {
    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<atomics::CasOutcome, CapFailure> {
        self.check_value(&value)?;
        let k = self.key(&key)?;
        self.note_partition(&key).await?;
        let _drop_from_cache = self.cache().invalidate_on_drop(vec![k.clone()]);
        let mut conn = self.backend().conn();
        let mut inv = COMPARE_AND_SWAP.key(&k);
        inv.key(self.index(&key)).arg(value).arg(expected.map(|v| v.to_string()).unwrap_or_default()).arg(&key);
        Ok(cas_outcome(self.backend().bounded(inv.invoke_async::<(i64, i64)>(&mut conn)).await?))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        min: Option<i64>,
        max: Option<i64>,
        once: Option<String>,
    ) -> Result<atomics::IncrementOutcome, CapFailure> {
        let k = self.key(&key)?;
        let marker = once.as_deref().map(|m| self.key(m)).transpose()?;
        self.one_partition(std::iter::once(key.as_str()).chain(once.as_deref()))?;
        self.note_partition(&key).await?;
        let _drop_from_cache = self.cache().invalidate_on_drop(marker.iter().cloned().chain([k.clone()]).collect());
        let mut conn = self.backend().conn();
        let mut inv = INCREMENT.key(&k);
        inv.key(self.index(&key))
            .key(marker.as_deref().unwrap_or(&k))
            .arg(delta)
            .arg(opt_num(min))
            .arg(opt_num(max))
            .arg(&key)
            .arg(once.as_deref().unwrap_or(""))
            .arg(if marker.is_some() { "1" } else { "0" });
        let (tag, value) = self.backend().bounded(inv.invoke_async::<(i64, Vec<u8>)>(&mut conn)).await?;
        Ok(increment_outcome(tag, value)?)
    }
}

/// An increment script's `{tag, value}`: 0 applied and 1 out of range
/// with the counter in decimal, 2 already applied with the marker.
pub(crate) fn increment_outcome(tag: i64, value: Vec<u8>) -> Result<atomics::IncrementOutcome, CapError> {
    Ok(match tag {
        0 => atomics::IncrementOutcome::Applied(decimal(&value)?),
        1 => atomics::IncrementOutcome::OutOfRange(decimal(&value)?),
        _ => atomics::IncrementOutcome::AlreadyApplied(value),
    })
}

/// A number a script answered in decimal.
pub(crate) fn decimal(value: &[u8]) -> Result<i64, CapError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| CapError::Internal("a counter is not an integer".into()))
}
