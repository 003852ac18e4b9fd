//! Analytics rules: what each stream event means for the figures. Plain
//! functions, unit-tested natively.

use serde::{Deserialize, Serialize};
use wharf_sdk::kv;
use wharf_sdk::money::Cents;
use wharf_sdk::prelude::*;

/// The part of an `order_completed` event analytics keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    pub id: String,
    pub product_id: String,
    pub quantity: i64,
    pub total: Cents,
}

/// Any event that names an order by `id` (`refund_order`, `order_stream`).
#[derive(Debug, Deserialize)]
pub struct OrderRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// One line of an order's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub event: String,
    pub stream: String,
    /// Stream entry id: milliseconds since the epoch, then a sequence number.
    pub entry: String,
}

/// Sales figures of one product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductSales {
    pub product_id: String,
    pub units: i64,
    pub revenue: Cents,
}

/// The timeline label of an event on `stream`.
pub fn step_name(stream: &str, kind: Option<&str>) -> String {
    match (stream, kind) {
        ("order_completed", _) => "completed".into(),
        ("refund_order", _) => "refused_by_inventory".into(),
        ("order_stream", Some(k)) => k.to_string(),
        (s, _) => s.to_string(),
    }
}

/// Puts an order's timeline in order. Across streams the flow decides: an
/// order completes before inventory refuses it or its customer asks for a
/// refund, because neither can happen to an order that is not completed.
/// The entry ids' clocks cannot say so: payment marks an order completed a
/// moment before it announces it, and a refund asked for in that moment is
/// on its stream first. Within a flow step, entry ids (`<ms>-<seq>`, compared
/// as numbers, not as text) give the order.
pub fn sort_timeline(steps: &mut [Step]) {
    fn flow_rank(stream: &str) -> u8 {
        match stream {
            "order_completed" => 0,
            "refund_order" | "order_stream" => 1,
            _ => 2,
        }
    }
    steps.sort_by_key(|s| {
        // `<ms>-<seq>@<partition>` on a partitioned stream: the partition
        // says nothing of time.
        let entry = s.entry.split('@').next().unwrap_or_default();
        let (ms, seq) = entry.split_once('-').unwrap_or((entry, "0"));
        (flow_rank(&s.stream), ms.parse::<u64>().unwrap_or(u64::MAX), seq.parse::<u64>().unwrap_or(u64::MAX))
    });
}

/// How a refund changes a product's figures: the sale is taken back.
pub fn refund_deltas(sale: &Sale) -> (i64, i64) {
    (-sale.quantity, -sale.total.0)
}

// Keys. A product's figures and the markers that count each order into
// them once are in the product's partition; an order's sale, refund mark
// and timeline in the order's: on a Redis Cluster both spread over the
// nodes (docs/PLUGIN_GUIDE.md, "Partitions").

pub fn units_key(product: &str) -> String {
    kv::partitioned("units:", product)
}
pub fn revenue_key(product: &str) -> String {
    kv::partitioned("revenue:", product)
}
/// The once-marker of `what` (`units-counted`, ...) for `order`, beside the
/// figure it guards, in `product`'s partition.
pub fn counted_key(what: &str, product: &str, order: &str) -> String {
    format!("{what}:{{{product}}}:{order}")
}
/// Set when a refund of the order is seen, whether or not its sale was yet.
pub fn refund_key(order: &str) -> String {
    kv::partitioned("refunded:", order)
}

pub fn sale_key(order: &str) -> String {
    kv::partitioned("sale:", order)
}
/// One event's step: named by its stream and entry id, as entry ids are
/// unique only within a stream (a completion and a refund appended in the
/// same millisecond on two streams may both be `<ms>-0`). The same on
/// redelivery.
pub fn timeline_key(order: &str, stream: &str, entry: &str) -> String {
    format!("{}:{stream}:{entry}", timeline_prefix(order))
}
/// Where one order's timeline is listed from: its partition alone.
pub fn timeline_prefix(order: &str) -> String {
    format!("timeline:{{{order}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_steps() {
        assert_eq!(step_name("order_completed", None), "completed");
        assert_eq!(step_name("order_stream", Some("refund_requested")), "refund_requested");
        assert_eq!(step_name("refund_order", None), "refused_by_inventory");
    }

    #[test]
    fn refunds_take_the_sale_back() {
        let sale = Sale { id: "o".into(), product_id: "p".into(), quantity: 3, total: Cents(360) };
        assert_eq!(refund_deltas(&sale), (-3, -360));
    }

    #[test]
    fn timelines_sort_by_the_flow_then_by_time() {
        let step = |stream: &str, entry: &str| Step {
            event: step_name(stream, Some("refund_requested")),
            stream: stream.into(),
            entry: entry.into(),
        };
        // Same millisecond on two streams: the refund's lower sequence number must not put it first.
        let mut steps = vec![step("order_stream", "1700000000000-0"), step("order_completed", "1700000000000-5")];
        sort_timeline(&mut steps);
        assert_eq!(steps[0].event, "completed");
        // Numbers, not text: seq 10 comes after seq 9.
        let mut steps = vec![step("order_stream", "1700000000001-10"), step("order_stream", "1700000000001-9")];
        sort_timeline(&mut steps);
        assert_eq!(steps[0].entry, "1700000000001-9");
        // A refund published a millisecond before the completion it follows
        // (payment announces an order just after marking it completed).
        let mut steps = vec![step("order_completed", "1700000000002-0"), step("order_stream", "1700000000001-0")];
        sort_timeline(&mut steps);
        assert_eq!(steps[0].stream, "order_completed");
        // Within a step, time: inventory's refusal, then the customer's refund.
        let mut steps = vec![step("order_stream", "1700000000003-0"), step("refund_order", "1700000000002-0")];
        sort_timeline(&mut steps);
        assert_eq!(steps[0].stream, "refund_order");
    }

    #[test]
    fn each_event_has_its_own_timeline_key() {
        // One entry id on two streams: two steps, not one over the other.
        assert_ne!(timeline_key("o", "order_completed", "1-0"), timeline_key("o", "order_stream", "1-0"));
        assert_eq!(timeline_key("o", "order_stream", "1-0"), timeline_key("o", "order_stream", "1-0"));
        assert!(timeline_key("o", "order_stream", "1-0").starts_with(&format!("{}:", timeline_prefix("o"))));
    }

    #[test]
    fn what_changes_together_shares_a_partition() {
        assert_eq!(units_key("p1"), "units:{p1}");
        assert_eq!(counted_key("units-counted", "p1", "o9"), "units-counted:{p1}:o9");
        assert_eq!(sale_key("o9"), "sale:{o9}");
        assert_eq!(timeline_key("o9", "order_stream", "1-0@2"), "timeline:{o9}:order_stream:1-0@2");
        assert_eq!(refund_key("o9"), "refunded:{o9}");
    }

    #[test]
    fn a_partitioned_entry_id_sorts_by_its_time() {
        let step = |stream: &str, entry: &str| Step {
            event: step_name(stream, None),
            stream: stream.into(),
            entry: entry.into(),
        };
        let mut steps = vec![step("order_stream", "1700000000002-0@1"), step("refund_order", "1700000000001-0@2")];
        sort_timeline(&mut steps);
        assert_eq!(steps[0].stream, "refund_order");
    }
}
