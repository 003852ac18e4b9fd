import { build } from "../versioned.js";

export const { manifest, http, eventsHandler } = build("v2");
