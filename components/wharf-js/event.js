// Events as delivered, and what a handler answers.

const decoder = new TextDecoder();

/** Not handled: `retryLater` delivers the event again later (then
 * dead-letters it after the host's attempt limit); `reject` dead-letters it
 * at once. */
export class EventError extends Error {
  constructor(retry, reason) {
    super(reason);
    this.name = "EventError";
    this.retry = retry;
    this.reason = reason;
  }
  static retryLater(reason) { return new EventError(true, reason); }
  static reject(reason) { return new EventError(false, reason); }
}

/** One stream entry, delivered to one of the component's groups. */
export class Event {
  constructor({ stream, id, payload, attempt = 1, group = "", origin = "" }) {
    Object.assign(this, { stream, id, payload, attempt, group, origin });
  }
  static fromWit(ev) {
    return new Event(ev);
  }
  /** Rejects an event no listed component published (the host stamps the origin). */
  requireOrigin(...components) {
    if (!components.includes(this.origin)) {
      throw EventError.reject(`${this.stream} from ${this.origin || "outside Wharf"}, not ${components.join(" or ")}`);
    }
  }
  /** The payload as JSON; one that does not parse is rejected (retrying cannot mend it). */
  json() {
    try {
      return JSON.parse(decoder.decode(this.payload));
    } catch (e) {
      throw EventError.reject(`payload is not JSON: ${e.message}`);
    }
  }
}
