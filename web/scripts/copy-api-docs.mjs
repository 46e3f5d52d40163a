// Copies Swagger UI (the pinned swagger-ui-dist package) into dist/api-docs, so the gateway's
// /docs loads nothing from a CDN. The page's start-up script is our own file (no inline script).
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const source = dirname(require.resolve("swagger-ui-dist/package.json"));
const target = join("dist", "api-docs");
mkdirSync(target, { recursive: true });
for (const file of ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"]) {
  copyFileSync(join(source, file), join(target, file));
}
copyFileSync(join("scripts", "api-docs-init.js"), join(target, "init.js"));
console.log(`copied Swagger UI from ${source} to ${target}`);
