#!/usr/bin/env node
// Proves the patches of scripts/patch-cosmosdb-server.mjs against a
// running @vercel/cosmosdb-server, over the Cosmos REST API with the same
// headers the Rust SDK sends (requests are signed with the master key the way
// Cosmos expects, although this server does not check the signature).
//
// Usage:
//   node scripts/check-cosmosdb-server.mjs                  # starts its own server (--no-ssl, free port)
//   node scripts/check-cosmosdb-server.mjs --package DIR    # ... from another copy of the package
//   node scripts/check-cosmosdb-server.mjs --endpoint http://127.0.0.1:8081   # an already running one
// Exit code 0 only when every check passes.

import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// The well-known Cosmos emulator key (public, not a secret).
const KEY =
  process.env.COSMOS_KEY ??
  "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function startServer(pkgDir) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(pkgDir, "lib/cli.js"), "-p", String(port), "--host", "127.0.0.1", "--no-ssl"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error("cosmosdb-server did not start within 10 s")), 10_000);
    child.stdout.on("data", (d) => {
      if (String(d).includes("Ready to accept")) {
        clearTimeout(timer);
        res();
      }
    });
    child.on("exit", (code) => rej(new Error(`cosmosdb-server exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, child };
}

// Cosmos master-key auth: HMAC-SHA256 over verb, resource type, resource link
// and date, each lower-cased except the link, with the base64-decoded key.
function authHeader(verb, resourceType, resourceLink, date) {
  const payload = `${verb.toLowerCase()}\n${resourceType.toLowerCase()}\n${resourceLink}\n${date.toLowerCase()}\n\n`;
  const sig = createHmac("sha256", Buffer.from(KEY, "base64")).update(payload).digest("base64");
  return encodeURIComponent(`type=master&ver=1.0&sig=${sig}`);
}

function makeClient(endpoint) {
  return async function call(verb, path, { resourceType, resourceLink, body, headers = {} } = {}) {
    const date = new Date().toUTCString();
    const h = {
      "x-ms-date": date,
      "x-ms-version": "2020-07-15",
      authorization: authHeader(verb, resourceType ?? "", resourceLink ?? "", date),
      accept: "application/json",
      ...headers,
    };
    if (body !== undefined && !h["content-type"]) h["content-type"] = "application/json";
    const res = await fetch(endpoint + path, {
      method: verb,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, headers: res.headers };
  };
}

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   - ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${name}: ${detail}`);
  }
}

async function main() {
  let server;
  let endpoint = opt("--endpoint");
  if (!endpoint) {
    server = await startServer(resolve(opt("--package") ?? join(repoRoot, "tests/js/node_modules/@vercel/cosmosdb-server")));
    endpoint = server.endpoint;
  }
  const call = makeClient(endpoint.replace(/\/$/, ""));
  try {
    const db = `check-${randomUUID().slice(0, 8)}`;
    const coll = "environments";
    const collLink = `dbs/${db}/colls/${coll}`;
    const pk = (v) => ({ "x-ms-documentdb-partitionkey": JSON.stringify([v]) });

    let r = await call("POST", "/dbs", { resourceType: "dbs", body: { id: db } });
    check("create database -> 201", r.status === 201, `status ${r.status}`);
    r = await call("POST", `/dbs/${db}/colls`, {
      resourceType: "colls",
      resourceLink: `dbs/${db}`,
      body: { id: coll, partitionKey: { paths: ["/userId"], kind: "Hash", version: 2 } },
    });
    check("create container /userId -> 201", r.status === 201, `status ${r.status}`);

    // Defect 4: the account metadata advertises the scheme actually served.
    r = await call("GET", "/", {});
    const locs = [...(r.json?.writableLocations ?? []), ...(r.json?.readableLocations ?? [])].map(
      (l) => l.databaseAccountEndpoint,
    );
    check(
      "defect 4: --no-ssl account metadata advertises http:// endpoints",
      r.status === 200 && locs.length > 0 && locs.every((u) => u.startsWith("http://")),
      `status ${r.status}, endpoints ${JSON.stringify(locs)}`,
    );
    check(
      "defect 4: content-location uses http://",
      (r.headers.get("content-location") ?? "").startsWith("http://"),
      `content-location ${r.headers.get("content-location")}`,
    );

    // Defect 1: partition-key range ids are strings.
    r = await call("GET", `/${collLink}/pkranges`, { resourceType: "pkranges", resourceLink: collLink });
    const ranges = r.json?.PartitionKeyRanges ?? [];
    check(
      'defect 1: pkranges feed returns id "0" (a string)',
      r.status === 200 && ranges.length === 1 && ranges[0].id === "0",
      `status ${r.status}, ranges ${JSON.stringify(ranges.map((x) => x.id))}`,
    );

    // Sanity of ordinary document operations.
    const doc = { id: "env-1", userId: "u1", name: "first" };
    r = await call("POST", `/${collLink}/docs`, { resourceType: "docs", resourceLink: collLink, body: doc, headers: pk("u1") });
    check("create document -> 201", r.status === 201, `status ${r.status}`);
    const etag = r.json?._etag;
    r = await call("POST", `/${collLink}/docs`, { resourceType: "docs", resourceLink: collLink, body: doc, headers: pk("u1") });
    check("duplicate id -> 409", r.status === 409, `status ${r.status}`);
    r = await call("GET", `/${collLink}/docs/env-1`, { resourceType: "docs", resourceLink: `${collLink}/docs/env-1`, headers: pk("u1") });
    check("point read existing -> 200", r.status === 200 && r.json?.name === "first", `status ${r.status}`);
    r = await call("PUT", `/${collLink}/docs/env-1`, {
      resourceType: "docs",
      resourceLink: `${collLink}/docs/env-1`,
      body: { ...doc, name: "second" },
      headers: { ...pk("u1"), "if-match": etag },
    });
    check("replace with current etag -> 200", r.status === 200, `status ${r.status}`);
    r = await call("PUT", `/${collLink}/docs/env-1`, {
      resourceType: "docs",
      resourceLink: `${collLink}/docs/env-1`,
      body: { ...doc, name: "third" },
      headers: { ...pk("u1"), "if-match": etag },
    });
    check("replace with stale etag -> 412", r.status === 412, `status ${r.status}`);

    // Defect 2: point read of a missing document.
    r = await call("GET", `/${collLink}/docs/nope`, { resourceType: "docs", resourceLink: `${collLink}/docs/nope`, headers: pk("u1") });
    check("defect 2: point read of a missing document -> 404", r.status === 404, `status ${r.status} ${JSON.stringify(r.json)}`);

    // Defect 3: a query whose SQL does not name the partition key, scoped the
    // way the Rust SDK scopes it: by a partition-key or a pk-range header.
    const qh = { "x-ms-documentdb-isquery": "true", "content-type": "application/query+json" };
    const q = (sql, parameters, headers) =>
      call("POST", `/${collLink}/docs`, {
        resourceType: "docs",
        resourceLink: collLink,
        body: { query: sql, parameters },
        headers: { ...qh, ...headers },
      });
    const byName = ["SELECT * FROM c WHERE c.name = @n", [{ name: "@n", value: "second" }]];
    r = await q(...byName, pk("u1"));
    check(
      "defect 3: query scoped by x-ms-documentdb-partitionkey -> 200",
      r.status === 200 && r.json?.Documents?.length === 1,
      `status ${r.status} ${JSON.stringify(r.json)}`,
    );
    r = await q(...byName, { "x-ms-documentdb-partitionkeyrangeid": "0" });
    check(
      "defect 3: query scoped by x-ms-documentdb-partitionkeyrangeid -> 200",
      r.status === 200 && r.json?.Documents?.length === 1,
      `status ${r.status} ${JSON.stringify(r.json)}`,
    );
    r = await q(...byName, { "x-ms-documentdb-query-enablecrosspartition": "true" });
    check("query with the cross-partition header -> 200 (unchanged)", r.status === 200, `status ${r.status}`);
    r = await q(...byName, {});
    check("unscoped query without any header -> 400 (unchanged)", r.status === 400, `status ${r.status}`);
    r = await q("SELECT * FROM c WHERE c.userId = @u", [{ name: "@u", value: "u1" }], pk("u1"));
    check(
      "query naming the partition key -> 200 (unchanged)",
      r.status === 200 && r.json?.Documents?.length === 1,
      `status ${r.status}`,
    );

    // Defect 5: resource ids use the Cosmos base64 alphabet ("-" for "/").
    // A database rid is built from a counter over the server's lifetime; the
    // 64th database (0x3f) is the first whose rid holds a "/" unpatched.
    const rids = [];
    for (let d = 0; d < 140; d += 1) {
      const rdb = `${db}-rid${d}`;
      r = await call("POST", "/dbs", { resourceType: "dbs", body: { id: rdb } });
      if (r.json?._rid) rids.push(r.json._rid);
      r = await call("POST", `/dbs/${rdb}/colls`, {
        resourceType: "colls",
        resourceLink: `dbs/${rdb}`,
        body: { id: "c", partitionKey: { paths: ["/id"], kind: "Hash", version: 2 } },
      });
      if (r.json?._rid) rids.push(r.json._rid);
      await call("DELETE", `/dbs/${rdb}`, { resourceType: "dbs", resourceLink: `dbs/${rdb}` });
    }
    check(
      'defect 5: resource ids never hold "/" (140 databases, one container each)',
      rids.length === 280 && rids.every((x) => !x.includes("/")),
      `${rids.length} rids, with "/": ${JSON.stringify(rids.filter((x) => x.includes("/")).slice(0, 4))}`,
    );

    r = await call("DELETE", `/dbs/${db}`, { resourceType: "dbs", resourceLink: `dbs/${db}` });
    check("delete database -> 204", r.status === 204, `status ${r.status}`);
  } finally {
    server?.child.kill();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
