//! What becomes of a delivered event once its handler has run (or could not
//! run): a pure decision, tested on its own like `trim::cut`.

use crate::engine::bindings::EventOutcome;

/// How one delivery went.
#[derive(Debug, Clone)]
pub enum Ran {
    /// The handler answered.
    Answered(EventOutcome),
    /// It trapped, overran its deadline, or its component is not loaded.
    Failed(String),
    /// No instance slot came free before the event's claim time: nothing ran.
    NoSlot,
    /// The handler ran, but no replica confirmed its writes
    /// (`redis_durability = "replicated"`): the replica's trouble, not the
    /// event's, so it is tried again however many attempts it has had.
    Unconfirmed(String),
    /// The handler asked to retry after Redis answered it `unavailable`
    /// (a failover, an outage): Redis's trouble too, so tried again however
    /// many attempts it has had, as `Unconfirmed` is.
    RedisUnavailable(String),
}

/// What the reader does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Handled: acknowledge it.
    Ack,
    /// Never again: to the dead-letter stream (which acknowledges it), with why.
    DeadLetter(String),
    /// Deliver it again after the backoff; why it failed this time.
    Retry(String),
    /// Not an attempt: leave it pending, to be claimed again later.
    LeavePending,
}

impl Decision {
    /// As the metrics and spans name it.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Ack => "acked",
            Decision::DeadLetter(_) => "dead_lettered",
            Decision::Retry(_) => "retried",
            Decision::LeavePending => "left_pending",
        }
    }
}

/// The decision for delivery number `attempt` (1 for the first), after which
/// `max_attempts` failures send an event to the dead letters. A rejection
/// goes there at once; a full pool costs no attempt.
pub fn decide(ran: Ran, attempt: u32, max_attempts: u32) -> Decision {
    let failed = match ran {
        Ran::Answered(EventOutcome::Ack) => return Decision::Ack,
        Ran::Answered(EventOutcome::Reject(why)) => return Decision::DeadLetter(format!("rejected: {why}")),
        Ran::NoSlot => return Decision::LeavePending,
        Ran::Unconfirmed(why) | Ran::RedisUnavailable(why) => return Decision::Retry(why),
        Ran::Answered(EventOutcome::Retry(why)) => format!("retry: {why}"),
        Ran::Failed(error) => error,
    };
    if attempt >= max_attempts {
        Decision::DeadLetter(format!("gave up after {attempt} attempts: {failed}"))
    } else {
        Decision::Retry(failed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unconfirmed_write_is_retried_and_never_dead_lettered() {
        let why = || Ran::Unconfirmed("no replica confirmed the write".into());
        assert_eq!(decide(why(), 1, 5), Decision::Retry("no replica confirmed the write".into()));
        assert_eq!(decide(why(), 50, 5), Decision::Retry("no replica confirmed the write".into()));
    }

    use super::*;

    #[test]
    fn a_retry_for_want_of_redis_is_never_dead_lettered() {
        let why = || Ran::RedisUnavailable("redis: connection refused".into());
        assert_eq!(decide(why(), 1, 5), Decision::Retry("redis: connection refused".into()));
        assert_eq!(decide(why(), 50, 5), Decision::Retry("redis: connection refused".into()));
        let asked = Ran::Answered(EventOutcome::Retry("later".into()));
        assert_eq!(decide(asked, 5, 5), Decision::DeadLetter("gave up after 5 attempts: retry: later".into()));
    }

    #[test]
    fn each_outcome_has_its_decision() {
        assert_eq!(decide(Ran::Answered(EventOutcome::Ack), 1, 5), Decision::Ack);
        assert_eq!(decide(Ran::Answered(EventOutcome::Ack), 9, 5), Decision::Ack, "late success still acks");
        assert_eq!(
            decide(Ran::Answered(EventOutcome::Reject("bad".into())), 1, 5),
            Decision::DeadLetter("rejected: bad".into()),
            "a rejection never waits for the attempts to run out"
        );
        assert_eq!(decide(Ran::NoSlot, 5, 5), Decision::LeavePending, "a full pool is not an attempt");
    }

    #[test]
    fn failures_retry_until_the_last_attempt() {
        let retry = Ran::Answered(EventOutcome::Retry("later".into()));
        assert_eq!(decide(retry.clone(), 1, 5), Decision::Retry("retry: later".into()));
        assert_eq!(decide(retry.clone(), 4, 5), Decision::Retry("retry: later".into()));
        assert_eq!(decide(retry, 5, 5), Decision::DeadLetter("gave up after 5 attempts: retry: later".into()));
        assert_eq!(
            decide(Ran::Failed("trap".into()), 1, 1),
            Decision::DeadLetter("gave up after 1 attempts: trap".into())
        );
        assert_eq!(decide(Ran::Failed("trap".into()), 2, 3), Decision::Retry("trap".into()));
    }
}
