// Publishing to streams (`wharf:plugin/events`). The host stamps each event
// with this component's name as its origin.

import * as events from "wharf:plugin/events@0.2.2";
import { host } from "./errors.js";

const encoder = new TextEncoder();
const bytes = (p) => (p instanceof Uint8Array ? p : encoder.encode(JSON.stringify(p)));

/** Appends `payload` (bytes, or a value sent as JSON); returns the entry id. */
export function publish(stream, payload) {
  return host(events.publish, stream, bytes(payload));
}

/** Like `publish`, in the partition of `key`: events of one key keep their order. */
export function publishKeyed(stream, key, payload) {
  return host(events.publishKeyed, stream, key, bytes(payload));
}

/** Publishes `payload` once `delayMs` has passed. */
export function publishAfter(stream, payload, delayMs) {
  host(events.publishAfter, stream, bytes(payload), BigInt(delayMs));
}
