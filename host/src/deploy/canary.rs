//! Canary deployments: a new version serves a share of the traffic on
//! every host beside the current one, and the fleet promotes it or rolls
//! it back by itself.
//!
//! `wharf deploy --canary 10%` writes the canary into the component's
//! record (`fleet`); every host loads it beside the version it runs
//! (`Registry::set_canary`). A request goes to the canary when the hash of
//! its request id falls in the share; an event when the hash of its
//! partition key does (the `split` field its publisher wrote), so one
//! order's events all meet the same version. Each host counts answers,
//! errors and latencies per side (`engine::tally::Tally`) and adds them to Redis every
//! second; any host may then judge the sums ([`judge`], pure): a canary
//! clearly worse than the current version is rolled back at once, one no
//! worse after the window is promoted. The record keeps the decision and
//! why, with the errors the canary cost.
//!
//! A canary must keep the routes and subscriptions of the version it is
//! tried against: both versions share the readers and the routing table,
//! only the code that runs differs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::deploy::fleet::{Apply, CHANGES, CanaryPlan, Fleet, HISTORY, HISTORY_LEN, RECORD, REVISION, Record, now_ms};
use crate::engine::tally::Counts;

/// Fewer canary answers than this prove nothing either way.
pub const MIN_ANSWERS: u64 = 20;

/// What becomes of a canary.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough seen yet.
    Wait,
    /// It serves everything from now on; why.
    Promote(String),
    /// Back to the current version alone; why.
    RollBack(String),
}

/// The decision, from both sides' sums and the time since the canary began.
/// Worse means: an error rate above the current one by more than 2 points
/// (and at least double it), or a p99 above 1.5 times the current one plus
/// 10 ms. A canary that is worse with `MIN_ANSWERS` answers is rolled back
/// at once; after `window`, one that is not worse is promoted, and one that
/// had too few answers to tell is rolled back (nothing proved it safe).
pub fn judge(stable: &Counts, canary: &Counts, elapsed: Duration, window: Duration) -> Verdict {
    let (s_rate, c_rate) = (stable.error_rate(), canary.error_rate());
    let errors_worse = c_rate > s_rate + 0.02 && c_rate >= 2.0 * s_rate;
    let (s_p99, c_p99) = (stable.p99_ms(), canary.p99_ms());
    let slower = !stable.is_empty() && c_p99 as f64 > s_p99 as f64 * 1.5 + 10.0;
    let compared = || format!("canary: {}; current: {}", canary.summary(), stable.summary());
    if canary.answers >= MIN_ANSWERS && errors_worse {
        return Verdict::RollBack(format!("more errors than the current version ({})", compared()));
    }
    if elapsed < window {
        return Verdict::Wait;
    }
    if canary.answers < MIN_ANSWERS {
        return Verdict::RollBack(format!(
            "too little traffic to judge: {} answers in {:?} (at least {MIN_ANSWERS} needed)",
            canary.answers, window
        ));
    }
    if slower {
        return Verdict::RollBack(format!("slower than the current version ({})", compared()));
    }
    Verdict::Promote(format!("no worse than the current version over {window:?} ({})", compared()))
}

/// `10%` or `10` as a share of 1 to 99 percent.
pub fn parse_share(text: &str) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("a canary share is a percentage such as 10%, not {text:?}"))?;
    if !(1..=99).contains(&n) {
        return Err(format!("a canary share is between 1% and 99%, not {n}%"));
    }
    Ok(n)
}

/// Starts a canary on the record, if the record still runs the version it
/// is tried against. KEYS: record, changes. ARGV: name, canary sha, share,
/// window (ms), now (ms), the current sha.
const START: &str = r"
if redis.call('HGET', KEYS[1], 'sha') ~= ARGV[6] then
  return redis.error_reply('the fleet runs another version of ' .. ARGV[1] .. ' now; try again')
end
redis.call('HSET', KEYS[1], 'canary', ARGV[2], 'canary_share', ARGV[3], 'canary_window', ARGV[4], 'canary_at', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'component', ARGV[1], 'canary', ARGV[2])
return 1
";

/// Ends a canary with its verdict, once: only if the record still names it.
/// A promotion makes it the record's version, with a new revision.
/// KEYS: record, history, changes, revision, verdict.
/// ARGV: name, canary sha, 'promote' or 'rollback', why, by, at (ms),
/// history length, the canary's errors, its answers.
const END: &str = r"
if redis.call('HGET', KEYS[1], 'canary') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'canary', 'canary_share', 'canary_window', 'canary_at')
if ARGV[3] == 'promote' then
  local rev = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[1], 'sha', ARGV[2], 'source', 'deploy', 'by', ARGV[5], 'at', ARGV[6], 'revision', rev)
  redis.call('LPUSH', KEYS[2], ARGV[2] .. ' deploy ' .. rev)
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[5], 'version', ARGV[2], 'decision', ARGV[3], 'why', ARGV[4], 'by', ARGV[5], 'at_ms', ARGV[6],
  'errors', ARGV[8], 'answers', ARGV[9])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'component', ARGV[1], 'canary', ARGV[3])
return 1
";

/// The last canary's verdict, per component.
const VERDICT: &str = "wharf:{fleet}:canary-verdict:";
/// Both sides' sums, per component and canary version.
const TALLY: &str = "wharf:{fleet}:canary-tally:";
/// Sums are kept this long after their last change.
const TALLY_TTL_MS: u64 = 24 * 3600 * 1000;
/// How often a host adds its tallies and judges the fleet's canaries.
pub const EVERY: Duration = Duration::from_secs(1);

fn tally_key(name: &str, sha: &str) -> String {
    format!("{TALLY}{name}:{sha}")
}

impl Fleet {
    /// Makes `sha` (`wasm`) the canary of `name` on every host, tried
    /// against `current`, the version the record names now.
    pub async fn start_canary(
        &self,
        name: &str,
        current: &str,
        sha: &str,
        wasm: &[u8],
        share: u32,
        window: Duration,
    ) -> Result<()> {
        self.store_artifact(sha, wasm).await?;
        let script = redis::Script::new(START);
        let mut inv = script.key(format!("{RECORD}{name}"));
        inv.key(CHANGES).arg(name).arg(sha).arg(share).arg(window.as_millis() as u64).arg(now_ms()).arg(current);
        let mut conn = self.redis.conn();
        self.bounded(self.redis.timeout, inv.invoke_async::<i64>(&mut conn)).await.context("recording the canary")?;
        Ok(())
    }

    /// The last verdict on a canary of `name` (empty: none yet).
    pub async fn verdict(&self, name: &str) -> Result<BTreeMap<String, String>> {
        self.query(redis::cmd("HGETALL").arg(format!("{VERDICT}{name}")).to_owned(), 1).await
    }

    /// Both sides' sums so far for `name`'s canary `sha`.
    pub async fn tallies(&self, name: &str, sha: &str) -> Result<(Counts, Counts)> {
        let h: HashMap<String, u64> = self.query(redis::cmd("HGETALL").arg(tally_key(name, sha)).to_owned(), 1).await?;
        let get = |k: &str| h.get(k).copied().unwrap_or(0);
        Ok((Counts::from_fields("s", get), Counts::from_fields("c", get)))
    }

    /// Loads, replaces or drops this host's canary of `record` to match it.
    pub(super) async fn follow_canary(&self, record: &Record, to: &dyn Apply) {
        let here = to.canary(&record.name);
        let Some(plan) = &record.canary else {
            if here.is_some() {
                to.end_canary(&record.name);
                tracing::info!(component = %record.name, "canary ended");
            }
            return;
        };
        let refused = self.refused_canaries.lock().unwrap_or_else(|e| e.into_inner()).contains(&plan.sha);
        if here.as_deref() == Some(plan.sha.as_str()) || refused || to.running(&record.name) != Some(record.sha.clone())
        {
            return;
        }
        let loaded = match self.fetch(&plan.sha).await {
            Ok(wasm) => to.start_canary(&record.name, wasm, plan.share).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(()) => {
                tracing::info!(component = %record.name, canary = %&plan.sha[..12], share = plan.share, "canary serving its share here")
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!(component = %record.name, canary = %&plan.sha[..12], error = %why, "this host cannot run the canary; its current version takes everything here");
                self.refused_canaries.lock().unwrap_or_else(|e| e.into_inner()).insert(plan.sha.clone());
                self.report_failure(&record.name, &plan.sha, &why).await;
            }
        }
    }

    /// Every `EVERY` until `stop`: adds this host's tallies to the fleet's
    /// sums, then judges each canary on them. Any host may end one: the
    /// script ends it once.
    pub async fn judge_canaries(self: Arc<Self>, to: Arc<dyn Apply>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.flush(to.as_ref()).await {
                tracing::debug!(error = %format!("{e:#}"), "adding canary tallies failed");
            }
            let Ok(records) = self.records().await else { continue };
            for record in records {
                let Some(plan) = &record.canary else { continue };
                if let Err(e) = self.judge_one(&record, plan).await {
                    tracing::debug!(component = %record.name, error = %format!("{e:#}"), "judging the canary failed");
                }
            }
        }
    }

    async fn flush(&self, to: &dyn Apply) -> Result<()> {
        let mut pipe = redis::pipe();
        for (name, sha, stable, canary) in to.take_tallies() {
            let key = tally_key(&name, &sha);
            let fields: Vec<(String, u64)> = stable.fields("s").into_iter().chain(canary.fields("c")).collect();
            if fields.is_empty() {
                continue;
            }
            for (field, n) in fields {
                pipe.cmd("HINCRBY").arg(&key).arg(field).arg(n).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&key).arg(TALLY_TTL_MS).ignore();
        }
        let mut conn = self.redis.conn();
        self.bounded(self.redis.timeout, pipe.query_async::<()>(&mut conn)).await
    }

    async fn judge_one(&self, record: &Record, plan: &CanaryPlan) -> Result<()> {
        let (stable, canary) = self.tallies(&record.name, &plan.sha).await?;
        let elapsed = Duration::from_millis(now_ms().saturating_sub(plan.started_ms));
        let (decision, why) = match judge(&stable, &canary, elapsed, Duration::from_millis(plan.window_ms)) {
            Verdict::Wait => return Ok(()),
            Verdict::Promote(why) => ("promote", why),
            Verdict::RollBack(why) => ("rollback", why),
        };
        let name = &record.name;
        let script = redis::Script::new(END);
        let mut inv = script.key(format!("{RECORD}{name}"));
        inv.key(format!("{HISTORY}{name}")).key(CHANGES).key(REVISION).key(format!("{VERDICT}{name}"));
        inv.arg(name).arg(&plan.sha).arg(decision).arg(&why).arg(&self.id).arg(now_ms()).arg(HISTORY_LEN);
        inv.arg(canary.errors).arg(canary.answers);
        let mut conn = self.redis.conn();
        let ended: i64 = self.bounded(self.redis.timeout, inv.invoke_async(&mut conn)).await?;
        if ended == 1 {
            tracing::warn!(component = %name, canary = %&plan.sha[..12], decision, why, "canary decided");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tally::Tally;

    fn counts(answers: u64, errors: u64, ms: u64) -> Counts {
        let t = Tally::default();
        for i in 0..answers {
            t.observe(i >= errors, Duration::from_millis(ms));
        }
        t.take()
    }

    const WINDOW: Duration = Duration::from_secs(30);

    #[test]
    fn a_failing_canary_is_rolled_back_before_the_window_ends() {
        let v = judge(&counts(1000, 0, 3), &counts(100, 100, 3), Duration::from_secs(2), WINDOW);
        assert!(matches!(&v, Verdict::RollBack(why) if why.contains("100 errors in 100 answers")), "{v:?}");
        // Too few answers yet: wait, whatever they were.
        assert_eq!(judge(&counts(1000, 0, 3), &counts(5, 5, 3), Duration::from_secs(2), WINDOW), Verdict::Wait);
    }

    #[test]
    fn a_healthy_canary_is_promoted_after_the_window_and_not_before() {
        let (s, c) = (counts(1000, 10, 3), counts(100, 1, 4));
        assert_eq!(judge(&s, &c, Duration::from_secs(10), WINDOW), Verdict::Wait);
        assert!(matches!(judge(&s, &c, WINDOW, WINDOW), Verdict::Promote(_)));
    }

    #[test]
    fn slowness_or_silence_rolls_back_at_the_window() {
        let v = judge(&counts(1000, 0, 3), &counts(100, 0, 300), WINDOW, WINDOW);
        assert!(matches!(&v, Verdict::RollBack(why) if why.starts_with("slower")), "{v:?}");
        let v = judge(&counts(1000, 0, 3), &counts(3, 0, 3), WINDOW, WINDOW);
        assert!(matches!(&v, Verdict::RollBack(why) if why.starts_with("too little traffic")), "{v:?}");
    }

    #[test]
    fn a_few_errors_where_the_current_version_has_them_too_are_no_verdict() {
        // 3% against 2%: within the margin.
        assert!(matches!(judge(&counts(1000, 20, 3), &counts(100, 3, 3), WINDOW, WINDOW), Verdict::Promote(_)));
    }

    #[test]
    fn shares_are_percentages_between_1_and_99() {
        assert_eq!(parse_share("10%"), Ok(10));
        assert_eq!(parse_share("25"), Ok(25));
        assert!(parse_share("0%").is_err() && parse_share("100%").is_err() && parse_share("ten").is_err());
    }
}
