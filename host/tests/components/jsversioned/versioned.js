// A JavaScript component in two versions (v1/app.js, v2/app.js), for the
// hot-swap test.
import { App, Reply } from "../../../../components/wharf-js/index.js";

export function build(version) {
  const app = new App("jsversioned");
  app.get("/jsversioned", () => Reply.json(200, { version }));
  return app.exports();
}
