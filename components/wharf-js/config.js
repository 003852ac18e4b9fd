// The component's settings from `wharf.toml` (`[components.<name>.config]`).

import { get as configGet } from "wharf:plugin/config@0.2.2";

export function get(key, fallback) {
  return configGet(key) ?? fallback;
}
