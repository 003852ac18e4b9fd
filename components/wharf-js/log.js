// Structured log lines through the host (`wharf:plugin/log`): they carry the
// component's name and the request id. `fields` is an object.

import { log } from "wharf:plugin/log@0.2.2";

const line = (level) => (message, fields = {}) =>
  log(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));

export const debug = line("debug");
export const info = line("info");
export const warn = line("warn");
export const error = line("error");
