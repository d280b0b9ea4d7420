#!/usr/bin/env node
// Smoke test of the Azurite queue peer through the connection string that
// `scripts/peers.sh env` prints: creates a queue, puts a message, gets it,
// deletes it and the queue, signing with SharedKey and sending the same too-new
// `x-ms-version` the Rust SDK sends (so `--skipApiVersionCheck` is proven).
//
//   eval "$(scripts/peers.sh env)"; node scripts/check-azurite.mjs

import { createHmac, randomUUID } from "node:crypto";

const conn = process.env.AzureWebJobsStorage;
if (!conn) {
  console.error('check-azurite: AzureWebJobsStorage is not set (eval "$(scripts/peers.sh env)")');
  process.exit(1);
}
const cs = Object.fromEntries(
  conn.split(";").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
);
const account = cs.AccountName;
const key = Buffer.from(cs.AccountKey, "base64");
const base = cs.QueueEndpoint.replace(/\/$/, "");
const VERSION = "2026-04-06"; // what azure_storage_queue 1.1 sends; newer than Azurite knows

async function call(method, path, { query = {}, body } = {}) {
  const url = new URL(base + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const headers = { "x-ms-date": new Date().toUTCString(), "x-ms-version": VERSION };
  const len = body ? Buffer.byteLength(body) : 0;
  if (body) headers["content-type"] = "application/xml";
  // SharedKey: verb, standard headers, canonical x-ms-* headers, canonical resource.
  const canonHeaders = Object.keys(headers)
    .filter((h) => h.startsWith("x-ms-"))
    .sort()
    .map((h) => `${h}:${headers[h]}\n`)
    .join("");
  const canonQuery = [...url.searchParams.keys()]
    .sort()
    .map((k) => `\n${k.toLowerCase()}:${url.searchParams.get(k)}`)
    .join("");
  const stringToSign = [
    method, "", "", len ? String(len) : "", "", headers["content-type"] ?? "",
    "", "", "", "", "", "",
  ].join("\n") + "\n" + canonHeaders + `/${account}${url.pathname}` + canonQuery;
  headers.authorization = `SharedKey ${account}:${createHmac("sha256", key).update(stringToSign, "utf8").digest("base64")}`;
  const res = await fetch(url, { method, headers, body });
  return { status: res.status, text: await res.text() };
}

let passed = 0;
let failed = 0;
const check = (name, ok, detail) => {
  if (ok) passed += 1;
  else failed += 1;
  console.log(`${ok ? "ok  " : "FAIL"} - ${name}${ok ? "" : `: ${detail}`}`);
};

const q = `check-${randomUUID().slice(0, 8)}`;
let r = await call("PUT", `/${q}`);
check("create queue -> 201", r.status === 201, `${r.status} ${r.text}`);
const payload = Buffer.from(JSON.stringify({ v: 1, kind: "reconcile" })).toString("base64");
r = await call("POST", `/${q}/messages`, { body: `<QueueMessage><MessageText>${payload}</MessageText></QueueMessage>` });
check("put message -> 201", r.status === 201, `${r.status} ${r.text}`);
r = await call("GET", `/${q}/messages`, { query: { numofmessages: "1", visibilitytimeout: "5" } });
const text = /<MessageText>([^<]*)<\/MessageText>/.exec(r.text)?.[1];
check("get message -> 200, same text", r.status === 200 && text === payload, `${r.status} ${r.text}`);
r = await call("DELETE", `/${q}`);
check("delete queue -> 204", r.status === 204, `${r.status} ${r.text}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
