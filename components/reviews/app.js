// Reviews: customers rate the shop's products, written in JavaScript.
//
// It learns which products exist from inventory's `product_changed` events
// (its own consumer group), so it needs no call to inventory: a review of a
// product it has not heard of, or of a deleted one, is refused with 404.
// Each customer reviews a product once; the review and the product's tallies
// change in one atomic step, counted once however often it is retried. A
// deletion is final, whatever order the announcements come in.
//
// - `POST /reviews/{product_id}`: a customer's review, `{rating, text}`.
// - `GET /reviews/{product_id}`: the count, the average and the reviews.

import { App, ApiError, Event, Reply, Role, kv } from "../wharf-js/index.js";
import * as rules from "./rules.js";

const app = new App("reviews");

const reviewSchema = {
  type: "object",
  required: ["rating"],
  properties: {
    rating: { type: "integer", minimum: 1, maximum: 5 },
    text: { type: "string", maxLength: rules.MAX_TEXT },
  },
};
const summarySchema = {
  type: "object",
  required: ["product_id", "count", "average", "reviews"],
  properties: {
    product_id: { type: "string" },
    count: { type: "integer", minimum: 0 },
    average: { type: ["number", "null"] },
    reviews: { type: "array", items: { type: "object" } },
  },
};

function requireKnown(id) {
  if (!rules.validProductId(id)) throw ApiError.notFound(`product ${id} not found`);
  const [known, deleted] = kv.getMany([rules.productKey(id), rules.deletedKey(id)]);
  if (known === undefined || deleted !== undefined) throw ApiError.notFound(`product ${id} not found`);
}

app.post(
  "/reviews/{product_id}",
  {
    summary: "Review a product (once per customer)",
    requestSchema: reviewSchema,
    responseSchema: { type: "object" },
    answers: [[201, "Reviewed"], [400, "Not JSON"], [401, "No credentials"], [404, "No such product"], [409, "Reviewed already"], [415, "Not application/json"], [422, "A bad rating or text"]],
  },
  (req) => {
    req.require(Role.CUSTOMER, Role.ADMIN);
    const id = req.param("product_id");
    let review;
    try {
      review = rules.checkReview(req.json());
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw ApiError.unprocessable(e.code, e.message);
    }
    requireKnown(id);
    const customer = req.subject ?? "admin";
    const stored = { product_id: id, customer, ...review };
    const [written] = kv.writeMany([
      { setIfAbsent: [rules.reviewKey(id, customer), JSON.stringify(stored)] },
      { increment: { key: rules.countKey(id), delta: 1, once: rules.countedMarker(id, customer) } },
      { increment: { key: rules.sumKey(id), delta: review.rating, once: rules.summedMarker(id, customer) } },
    ]);
    if (written.val === false) throw ApiError.conflict("reviewed", `${customer} has reviewed ${id} already`);
    return Reply.json(201, stored);
  },
);

app.get(
  "/reviews/{product_id}",
  { summary: "A product's reviews", responseSchema: summarySchema, answers: [[200, "The reviews"], [404, "No such product"]] },
  (req) => {
    const id = req.param("product_id");
    requireKnown(id);
    const keys = kv.listKeys(rules.reviewPrefix(id), undefined, rules.MAX_LISTED);
    const [count, sum, ...values] = kv.getMany([rules.countKey(id), rules.sumKey(id), ...keys]);
    const number = (v) => (v === undefined ? 0 : Number(new TextDecoder().decode(v)));
    const reviews = values.filter((v) => v !== undefined).map((v) => JSON.parse(new TextDecoder().decode(v)));
    return Reply.json(200, {
      product_id: id,
      count: number(count),
      average: rules.average(number(sum), number(count)),
      reviews,
    });
  },
);

app.subscribe("product_changed", "reviews-products", (ev) => {
  ev.requireOrigin("inventory");
  const news = rules.announcement(ev.json());
  if (news === null || !rules.validProductId(news.id)) return;
  // Known and deleted are two keys, each only ever set: however the
  // announcements are ordered or repeated, a deletion stays final.
  kv.setIfAbsent(news.known ? rules.productKey(news.id) : rules.deletedKey(news.id), "1");
});

export const { manifest, http, eventsHandler } = app.exports();
