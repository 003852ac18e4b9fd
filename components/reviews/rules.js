// Reviews' rules: plain JavaScript, tested natively with `node --test` (rules.test.js).

export const MAX_TEXT = 500;
export const MAX_LISTED = 100;

/** A review as posted: `{rating: 1-5, text: at most 500 characters}`.
 * Returns `{rating, text}` or throws a `{code, message}` for a 422. */
export function checkReview(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw { code: "invalid_body", message: "a review is an object with rating and text" };
  }
  const { rating, text = "" } = body;
  if (!Number.isInteger(rating) || rating < 1 || rating > 5) {
    throw { code: "invalid_rating", message: "rating is a whole number from 1 to 5" };
  }
  if (typeof text !== "string" || [...text].length > MAX_TEXT) {
    throw { code: "invalid_text", message: `text is a string of at most ${MAX_TEXT} characters` };
  }
  return { rating, text };
}

/** Whether `id` can name a product (inventory's ids are ULIDs): anything
 * else is no product, and never reaches a key. */
export function validProductId(id) {
  return /^[A-Za-z0-9_-]{1,64}$/.test(id);
}

/** The average of `sum` over `count` ratings, to two decimals; null with none. */
export function average(sum, count) {
  return count > 0 ? Math.round((sum / count) * 100) / 100 : null;
}

// Keys: a product's reviews and tallies share its partition (`{id}`), so a
// review and its tallies are written in one atomic step, on a cluster too.
// A customer's name is escaped: no brace or `:` of theirs reaches a key.
const escaped = (customer) => encodeURIComponent(customer);
export const productKey = (id) => `product:{${id}}`;
/** Set once a deletion is seen, never removed: a deletion is final. */
export const deletedKey = (id) => `deleted:{${id}}`;
export const reviewPrefix = (id) => `review:{${id}}:`;
export const reviewKey = (id, customer) => `${reviewPrefix(id)}${escaped(customer)}`;
export const countKey = (id) => `count:{${id}}`;
export const sumKey = (id) => `sum:{${id}}`;
/** `once` markers: a customer's review counts once in each tally. */
export const countedMarker = (id, customer) => `counted:{${id}}:${escaped(customer)}`;
export const summedMarker = (id, customer) => `summed:{${id}}:${escaped(customer)}`;

/** What `product_changed` tells: `{id, known}` (known false once deleted), or
 * null for a payload that is not one. */
export function announcement(msg) {
  if (msg === null || typeof msg !== "object" || typeof msg.id !== "string" || !msg.id) return null;
  return { id: msg.id, known: msg.deleted !== true };
}
