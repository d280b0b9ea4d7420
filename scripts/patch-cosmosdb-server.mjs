#!/usr/bin/env node
// Idempotent patch of the installed `@vercel/cosmosdb-server` (1.0.1) so the
// Rust Cosmos SDK (`azure_data_cosmos`, key auth) can use it as a test peer.
//
// Usage: node scripts/patch-cosmosdb-server.mjs [path/to/@vercel/cosmosdb-server]
//        (default: tests/js/node_modules/@vercel/cosmosdb-server)
//
// Each patch replaces one exact snippet of the compiled JS in lib/ and leaves
// a `dev8-patch:<name>` marker. A patch whose marker is present is skipped; a
// patch whose snippet is missing (another package version) fails loudly
// instead of silently leaving the server broken. Proof: scripts/check-cosmosdb-server.mjs.

import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = resolve(
  process.argv[2] ?? join(repoRoot, "tests/js/node_modules/@vercel/cosmosdb-server"),
);
const EXPECTED_VERSION = "1.0.1";

if (!existsSync(join(pkgDir, "package.json"))) {
  console.error(`patch-cosmosdb-server: no package at ${pkgDir} (run \`npm ci\` in tests/js first)`);
  process.exit(1);
}
const version = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
if (version !== EXPECTED_VERSION) {
  console.error(
    `patch-cosmosdb-server: found version ${version}, the patches were written for ${EXPECTED_VERSION}; ` +
      "check each defect again before changing EXPECTED_VERSION",
  );
  process.exit(1);
}

const patches = [
  {
    // Defect 1: every collection gets one partition-key range whose `id` is the
    // NUMBER 0. Real Cosmos returns ids as strings, and the Rust driver fails
    // topology resolution on a number (surfaces as 503, sub-status 20305).
    name: "pkrange-id-string",
    file: "lib/account/collection.js",
    find: `                id: 0,\n`,
    replace: `                id: "0", /* dev8-patch:pkrange-id-string: real Cosmos ids are strings */\n`,
  },
  {
    // Defect 2: a point read of a missing document (without the cross-partition
    // header, i.e. every SDK point read) dereferences `data` before checking
    // it: `data[path]` throws a TypeError and the server answers 500. Real
    // Cosmos answers 404 NotFound, which the store maps to "no such record".
    name: "read-missing-doc-404",
    file: "lib/handler/read-document.js",
    find: `        const data = collection.document(docId, parsedPartitionKey).read();\n`,
    replace:
      `        const data = collection.document(docId, parsedPartitionKey).read();\n` +
      `        /* dev8-patch:read-missing-doc-404: a missing document is 404, not a TypeError (500) */\n` +
      `        if (!data) {\n` +
      `            res.statusCode = 404;\n` +
      `            return {\n` +
      `                code: "NotFound",\n` +
      `                message: "Entity with the specified id does not exist in the system.,"\n` +
      `            };\n` +
      `        }\n`,
  },
  {
    // Defect 3: a query on a partitioned container is refused with 400
    // "missing partition keys" unless `x-ms-documentdb-query-enablecrosspartition:
    // true` is sent or the SQL text names the partition key in a way the parser
    // recognises. The Rust SDK scopes a query with the partition-key header
    // (`x-ms-documentdb-partitionkey`) or a pk-range header
    // (`x-ms-documentdb-partitionkeyrangeid`) instead, which real Cosmos
    // accepts. Accept either. NOTE: the server still does not filter by that
    // header, so callers keep `c.userId = @u` in the WHERE clause.
    name: "query-accept-pk-headers",
    file: "lib/handler/query-documents.js",
    find: `    if (!(0, true_header_1.default)(req, "x-ms-documentdb-query-enablecrosspartition")) {\n`,
    replace:
      `    if (!(0, true_header_1.default)(req, "x-ms-documentdb-query-enablecrosspartition") &&\n` +
      `        /* dev8-patch:query-accept-pk-headers: a query scoped by partition key or pk range is valid */\n` +
      `        !req.headers["x-ms-documentdb-partitionkey"] &&\n` +
      `        !req.headers["x-ms-documentdb-partitionkeyrangeid"]) {\n`,
  },
  {
    // Defect 4 (part 1): the account metadata (`GET /`) is built the same way
    // for the http and https servers and always advertises
    // `https://host:port/` as the writable/readable location. With --no-ssl
    // the SDK follows that advertised endpoint and then fails TLS on a plain
    // http port. Rewrite the locations to http:// when the http server is used.
    name: "nossl-http-endpoints",
    file: "lib/index.js",
    // first occurrence is createHttpServer (the second is createHttpsServer)
    find:
      `        account = createAccount(server.address());\n    });\n    return server;\n}\nexports.createHttpServer = createHttpServer;\n`,
    replace:
      `        account = createAccount(server.address());\n` +
      `        /* dev8-patch:nossl-http-endpoints: a plain http server must advertise http:// endpoints */\n` +
      `        for (const loc of [...account.read().writableLocations, ...account.read().readableLocations]) {\n` +
      `            loc.databaseAccountEndpoint = loc.databaseAccountEndpoint.replace(/^https:/, "http:");\n` +
      `        }\n` +
      `    });\n    return server;\n}\nexports.createHttpServer = createHttpServer;\n`,
  },
  {
    // Defect 4 (part 2): the same https assumption in every response's
    // Content-Location header; use the scheme of the connection.
    name: "nossl-content-location",
    file: "lib/index.js",
    find: "        res.setHeader(\"content-location\", `https://${req.headers.host}${req.url}`);\n",
    replace:
      "        /* dev8-patch:nossl-content-location: the scheme of the connection, not always https */\n" +
      "        res.setHeader(\"content-location\", `${req.socket.encrypted ? \"https\" : \"http\"}://${req.headers.host}${req.url}`);\n",
  },
  {
    // Defect 5: resource ids (_rid) are written as standard base64, which can
    // hold "/". Cosmos writes them with "-" in place of "/" (they appear in
    // resource paths), and the Rust driver refuses a container _rid with "/"
    // ("invalid container _rid", 500/20020): opening a container fails for
    // roughly one database in eight. Write and read the Cosmos alphabet (the
    // reader also replaced only the first "-").
    name: "rid-cosmos-base64",
    file: "lib/account/resource-id.js",
    find:
      `    static fromBase64String(s) {\n        return Buffer.from(s.replace("-", "/"), "base64");\n    }\n` +
      `    static toBase64String(buffer) {\n        return buffer.toString("base64");\n    }\n`,
    replace:
      `    /* dev8-patch:rid-cosmos-base64: Cosmos rids use "-" for "/", everywhere in the string */\n` +
      `    static fromBase64String(s) {\n        return Buffer.from(s.replace(/-/g, "/"), "base64");\n    }\n` +
      `    static toBase64String(buffer) {\n        return buffer.toString("base64").replace(/\\//g, "-");\n    }\n`,
  },
];

let applied = 0;
let failed = 0;
for (const p of patches) {
  const path = join(pkgDir, p.file);
  const src = readFileSync(path, "utf8");
  if (src.includes(`dev8-patch:${p.name}`)) {
    console.log(`patch-cosmosdb-server: ${p.name}: already applied`);
    continue;
  }
  const count = src.split(p.find).length - 1;
  if (count !== 1) {
    console.error(
      `patch-cosmosdb-server: ${p.name}: expected the snippet once in ${p.file}, found it ${count} times`,
    );
    failed += 1;
    continue;
  }
  writeFileSync(path, src.replace(p.find, () => p.replace));
  console.log(`patch-cosmosdb-server: ${p.name}: applied to ${p.file}`);
  applied += 1;
}
if (failed) {
  console.error(`patch-cosmosdb-server: ${failed} patch(es) could not be applied`);
  process.exit(1);
}
console.log(`patch-cosmosdb-server: ok (${applied} applied now, ${patches.length - applied} already in place)`);
