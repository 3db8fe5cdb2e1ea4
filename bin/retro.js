#!/usr/bin/env node
// Entry point of the `retro` CLI. An installed package runs the compiled JavaScript in dist/ (built by
// `npm run build`, which `prepack` runs); a source checkout (src/ present) runs the TypeScript through tsx,
// so an edit never runs stale output. RETRO_DIST=1 forces dist/ in a checkout.
import { existsSync } from "node:fs";

const checkout = existsSync(new URL("../src/cli/main.ts", import.meta.url));
if (checkout && !process.env.RETRO_DIST) {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
} else {
  await import("../dist/cli/main.js");
}
