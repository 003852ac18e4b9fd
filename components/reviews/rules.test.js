// Reviews' rules, natively: `node --test components/reviews`.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as rules from "./rules.js";

test("a review has a rating from 1 to 5 and bounded text", () => {
  assert.deepEqual(rules.checkReview({ rating: 5, text: "great" }), { rating: 5, text: "great" });
  assert.deepEqual(rules.checkReview({ rating: 1 }), { rating: 1, text: "" });
  for (const bad of [null, [], "5", { rating: 0 }, { rating: 6 }, { rating: 4.5 }, { rating: "5" }, { rating: 3, text: 7 }]) {
    assert.throws(() => rules.checkReview(bad), (e) => typeof e.code === "string", JSON.stringify(bad));
  }
  assert.throws(() => rules.checkReview({ rating: 3, text: "x".repeat(501) }), { code: "invalid_text" });
  // Characters, not UTF-16 units: 500 emoji are fine.
  assert.doesNotThrow(() => rules.checkReview({ rating: 3, text: "🍵".repeat(500) }));
});

test("a product id is what inventory gives, nothing a key cannot hold", () => {
  assert.ok(rules.validProductId("01M956V4ZSDNRYEERQR7EY5JDB"));
  for (const bad of ["", "a{b}", "a b", "x".repeat(65), "é"]) assert.ok(!rules.validProductId(bad), bad);
});

test("the average has two decimals, and none without ratings", () => {
  assert.equal(rules.average(14, 3), 4.67);
  assert.equal(rules.average(0, 0), null);
});

test("a product's keys share its partition", () => {
  for (const key of [rules.reviewKey("P1", "alice"), rules.countKey("P1"), rules.sumKey("P1"), rules.countedMarker("P1", "a")]) {
    assert.ok(key.includes("{P1}"), key);
  }
  assert.ok(rules.reviewKey("P1", "alice").startsWith(rules.reviewPrefix("P1")));
});

test("announcements say whether a product is known", () => {
  assert.deepEqual(rules.announcement({ id: "P1", version: 2, name: "Tea" }), { id: "P1", known: true });
  assert.deepEqual(rules.announcement({ id: "P1", deleted: true }), { id: "P1", known: false });
  assert.equal(rules.announcement({ version: 1 }), null);
  assert.equal(rules.announcement("nope"), null);
});

test("no customer name reaches a key as it is, nor collides with another's marker", () => {
  assert.ok(!rules.reviewKey("P1", "a{b}").includes("{b}"));
  assert.notEqual(rules.countedMarker("P1", "x:sum"), rules.summedMarker("P1", "x"));
  assert.notEqual(rules.countedMarker("P1", "x"), rules.summedMarker("P1", "x"));
});
