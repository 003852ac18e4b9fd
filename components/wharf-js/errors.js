// What a host capability fails with, as one JavaScript error.

/** The host could not serve a capability call. `kind` is the WIT `error`
 * case: "invalid" (the call itself is wrong), "unavailable" (Redis, for now:
 * try again) or "internal". */
export class CapabilityError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.name = "CapabilityError";
    this.kind = kind;
    this.message = message;
  }
}

/** Calls a generated import, turning the error it throws (its `payload` is
 * the WIT `error` variant) into a `CapabilityError`. */
export function host(fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    const err = e?.payload;
    if (err && typeof err.tag === "string") throw new CapabilityError(err.tag, String(err.val));
    throw e;
  }
}
