// The component's own key-value namespace (`wharf:plugin/kv`, `atomics`,
// `batch`). Keys are plain strings; the host maps them into the component's
// namespace. Values are bytes (Uint8Array) or, with the *Json forms, JSON.
// Each function throws `CapabilityError` when the host cannot serve it.

import * as kv from "wharf:plugin/kv@0.2.2";
import * as atomics from "wharf:plugin/atomics@0.2.2";
import * as batch from "wharf:plugin/batch@0.2.2";
import { host } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (v) => (v instanceof Uint8Array ? v : encoder.encode(String(v)));
const opt = (n) => (n === undefined || n === null ? undefined : BigInt(n));

/** The value at `key` (bytes), or undefined. */
export function get(key) {
  return host(kv.get, key);
}

/** The value at `key` as text, or undefined. */
export function getText(key) {
  const v = get(key);
  return v === undefined ? undefined : decoder.decode(v);
}

/** The value at `key` parsed as JSON, or undefined. */
export function getJson(key) {
  const v = getText(key);
  return v === undefined ? undefined : JSON.parse(v);
}

/** Several values in one round trip, in the order of `keys`. */
export function getMany(keys) {
  return host(batch.getMany, keys);
}

/** Writes `value` (bytes or text); returns its new version. */
export function set(key, value) {
  return Number(host(kv.set, key, bytes(value)));
}

export function setJson(key, value) {
  return set(key, JSON.stringify(value));
}

/** Writes `value` only if `key` is absent; true if it wrote. */
export function setIfAbsent(key, value, ttlMs) {
  return host(kv.setIfAbsent, key, bytes(value), opt(ttlMs));
}

export function del(key) {
  return host(kv.delete, key);
}

/** Keys starting with `prefix`, in order, after `startAfter`. */
export function listKeys(prefix, startAfter, limit = 100) {
  return host(kv.listKeys, prefix, startAfter, limit);
}

/** Adds `delta` to the integer at `key` (absent: 0) in one atomic step,
 * within [min, max]. With `once` (a marker key) it happens at most once: a
 * redelivered event does not count twice. Returns `{applied, value,
 * already}`. */
export function increment(key, delta, { min, max, once } = {}) {
  const out = host(atomics.increment, key, BigInt(delta), opt(min), opt(max), once);
  if (out.tag === "applied") return { applied: true, value: Number(out.val), already: false };
  if (out.tag === "out-of-range") return { applied: false, value: Number(out.val), already: false };
  return { applied: false, value: undefined, already: true };
}

/** Several writes in one round trip and one atomic step (WIT `batch.write-many`):
 * `{set: [key, value]}`, `{setIfAbsent: [key, value]}`, `{increment: {key,
 * delta, once}}`, `{delete: key}`. Returns what each did, in order. */
export function writeMany(writes) {
  const wit = writes.map((w) => {
    if (w.set) return { tag: "set", val: [w.set[0], bytes(w.set[1])] };
    if (w.setIfAbsent) return { tag: "set-if-absent", val: [w.setIfAbsent[0], bytes(w.setIfAbsent[1]), undefined] };
    if (w.increment) {
      const { key, delta, min, max, once } = w.increment;
      return { tag: "increment", val: { key, delta: BigInt(delta), min: opt(min), max: opt(max), once } };
    }
    if (w.delete !== undefined) return { tag: "delete", val: w.delete };
    throw new TypeError(`not a write: ${JSON.stringify(w)}`);
  });
  return host(batch.writeMany, wit);
}
