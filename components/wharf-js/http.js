// Requests as the host routed them, replies, and errors in the host's JSON shape.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Who the caller is, as the host established it (`x-wharf-role`). */
export const Role = Object.freeze({ ADMIN: "admin", CUSTOMER: "customer", ANONYMOUS: "anonymous" });

/** An HTTP error: `{"error": {"code", "message"}}` with `status`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
  static notFound(message) { return new ApiError(404, "not_found", message); }
  static unprocessable(code, message) { return new ApiError(422, code, message); }
  static conflict(code, message) { return new ApiError(409, code, message); }
  static unauthenticated(message = "credentials required") { return new ApiError(401, "unauthenticated", message); }
  static forbidden(message = "not allowed") { return new ApiError(403, "forbidden", message); }
  static unavailable(message) { return new ApiError(503, "unavailable", message); }
  reply() {
    return Reply.json(this.status, { error: { code: this.code, message: this.message } });
  }
}

/** A response: status, headers and body (bytes). */
export class Reply {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
  static json(status, value) {
    return new Reply(status, [["content-type", "application/json"]], encoder.encode(JSON.stringify(value)));
  }
  static noContent() {
    return new Reply(204, [], new Uint8Array());
  }
  withHeader(name, value) {
    this.headers.push([name.toLowerCase(), value]);
    return this;
  }
}

/** One request: method, path, the route the host matched and its params. */
export class Request {
  constructor({ method, path, route = "", params = [], headers = [], query = "", body = new Uint8Array() }) {
    Object.assign(this, { method, path, route, query, body });
    this.params = new Map(params);
    this.headers = headers;
  }
  static fromWit(req) {
    return new Request(req);
  }
  /** A `{name}` placeholder of the route (the host matched it, so it is there). */
  param(name) {
    return this.params.get(name) ?? "";
  }
  header(name) {
    const lower = name.toLowerCase();
    return this.headers.find(([k]) => k === lower)?.[1];
  }
  get role() {
    const role = this.header("x-wharf-role");
    return Object.values(Role).includes(role) ? role : Role.ANONYMOUS;
  }
  /** Who the caller is (`x-wharf-subject`); undefined when anonymous. */
  get subject() {
    return this.header("x-wharf-subject") || undefined;
  }
  /** Refuses a caller whose role is not among `allowed`: 401 when anonymous, else 403. */
  require(...allowed) {
    if (allowed.includes(this.role)) return;
    if (this.role === Role.ANONYMOUS) throw ApiError.unauthenticated();
    throw ApiError.forbidden(`${this.role} may not ${this.method} ${this.path}`);
  }
  /** The body as JSON: 415 unless it says `application/json`, 400 if it does not parse. */
  json() {
    const media = (this.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (media !== "application/json" && !(media.startsWith("application/") && media.endsWith("+json"))) {
      throw new ApiError(415, "unsupported_media_type", "the body must be application/json");
    }
    try {
      return JSON.parse(decoder.decode(this.body));
    } catch (e) {
      throw new ApiError(400, "invalid_json", `the body is not JSON: ${e.message}`);
    }
  }
}
