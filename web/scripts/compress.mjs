// Writes a Brotli (.br) and a gzip (.gz) copy beside every text file of dist/, once at build
// time, so the gateway sends the smallest one the browser accepts without compressing per
// request (see services/gateway/web.py). Node's own zlib: no extra package.
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const COMPRESSIBLE = /\.(html|js|mjs|css|svg|json|txt|map)$/;
const MIN_BYTES = 1024; // below this the headers outweigh the saving

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

let before = 0;
let after = 0;
for (const path of files("dist")) {
  if (!COMPRESSIBLE.test(path)) continue;
  const body = readFileSync(path);
  if (body.length < MIN_BYTES) continue;
  const br = brotliCompressSync(body, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
  writeFileSync(`${path}.br`, br);
  writeFileSync(`${path}.gz`, gzipSync(body, { level: 9 }));
  before += body.length;
  after += br.length;
}
console.log(`compressed dist/: ${before} bytes of text, ${after} as Brotli`);
