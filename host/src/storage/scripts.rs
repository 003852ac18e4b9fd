//! Every Lua script Wharf runs in Redis, each whole in its own file under
//! `lua/` (its keys and arguments described at its top), loaded once and
//! run by its sha1 (`EVALSHA`, loaded again after a Redis restart).
//!
//! The `*_and_publish` scripts repeat their write's lines on purpose: each
//! file reads whole, top to bottom, as Redis runs it (the joined fragments
//! they replace shared locals no single file showed).
//!
//! Time inside a script is Redis's clock (`TIME`), never a host's: hosts
//! sharing a Redis then agree on what is due whatever their clocks say.

use std::sync::LazyLock;

use redis::Script;

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $file:literal;)*) => {
        $(
            $(#[$doc])*
            pub static $name: LazyLock<Script> =
                LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file, ".lua"))));
        )*
    };
}

scripts! {
    /// `kv.set`
    SET = "set";
    /// `kv.set-if-absent`
    SET_IF_ABSENT = "set_if_absent";
    /// `atomics.compare-and-swap`
    COMPARE_AND_SWAP = "compare_and_swap";
    /// `kv.delete`
    DELETE = "delete";
    /// `atomics.increment`
    INCREMENT = "increment";
    /// `batch.write-many`
    WRITE_MANY = "write_many";
    /// `outbox.set-if-absent-and-publish`
    SET_IF_ABSENT_AND_PUBLISH = "set_if_absent_and_publish";
    /// `outbox.compare-and-swap-and-publish`
    COMPARE_AND_SWAP_AND_PUBLISH = "compare_and_swap_and_publish";
    /// `outbox.delete-and-publish`
    DELETE_AND_PUBLISH = "delete_and_publish";
    /// The outbox publisher takes the entries due.
    OUTBOX_LEASE_DUE = "outbox_lease_due";
    /// The outbox publisher clears a batch.
    OUTBOX_SETTLE_BATCH = "outbox_settle_batch";
    /// `events.publish-after`
    PUBLISH_AFTER = "publish_after";
    /// The delayed-event mover.
    MOVE_DUE = "move_due";
    /// The shared rate limit.
    TAKE_TOKEN = "take_token";
    /// A reader takes back its own failed entry.
    RECLAIM_OWN = "reclaim_own";
    /// An entry moved to the dead letters.
    DEAD_LETTER = "dead_letter";
    /// A dead letter replayed.
    REPLAY = "replay";
}
