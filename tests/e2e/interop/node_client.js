#!/usr/bin/env node
// A crawler node written with the official @microsoft/signalr JavaScript client, driven by
// tests/e2e/test_signalr_interop.py. It proves that the broker's /node hub speaks the
// protocol the official client expects:
//   1. wrong signs / stale timestamps are refused (negotiate 401, and WebSocket 401 with
//      skipNegotiation);
//   2. with a valid sign it negotiates (POST /node/negotiate?negotiateVersion=1), connects
//      over WebSockets, and Heartbeat returns an array;
//   3. it receives `Receive(block)` pushed by the broker, answers the first block with
//      SaveBlockResponse (the dedup hash computed like a real node) and gets `true`;
//   4. it receives `Exit(identity)` when the run is exited while it still holds a block.
// Every step is printed as one JSON line on stdout ({"event": ...}); the exit code is 0
// only when all steps passed. Usage:
//   node node_client.js --url http://127.0.0.1:PORT --token T [--timeout-ms 60000]
"use strict";

const crypto = require("crypto");
const signalR = require("@microsoft/signalr");

function parseArgs(argv) {
  const out = { url: "", token: "", timeoutMs: 60000, nodeId: crypto.randomUUID() };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i], v = argv[i + 1];
    if (k === "--url") out.url = v.replace(/\/+$/, "");
    else if (k === "--token") out.token = v;
    else if (k === "--timeout-ms") out.timeoutMs = Number(v);
    else if (k === "--node-id") out.nodeId = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (!out.url || !out.token) throw new Error("--url and --token are required");
  return out;
}

const args = parseArgs(process.argv);

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function sign(subject, ts, token) {
  return crypto.createHmac("sha256", token).update(`${subject}\n${ts}`).digest("hex");
}

function nodeUrl({ ts, signValue, token = args.token } = {}) {
  const t = ts ?? Math.floor(Date.now() / 1000);
  const q = new URLSearchParams({
    nodeId: args.nodeId, group: "default", ip: "127.0.0.1", memory: "2048", nodeType: "1",
    os: `node ${process.version}`, processorCount: "1", ts: String(t),
    sign: signValue ?? sign(args.nodeId, t, token),
  });
  return `${args.url}/node?${q}`;
}

// The dedup key a node reports with each result: first 16 hex chars of
// MD5(referer "." origin "." method "." content "." url).
function requestHash(r) {
  const key = [r.referer || "", r.origin || "", r.method || "GET", r.content || "", r.url]
    .join(".");
  return crypto.createHash("md5").update(key).digest("hex").slice(0, 16);
}

function build(url, options = {}) {
  return new signalR.HubConnectionBuilder()
    .withUrl(url, options)
    .configureLogging(signalR.LogLevel.Warning)  // console.warn/error: stderr (js-node.log)
    .build();
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function expectRefused(what, url, options, pattern) {
  const c = build(url, options);
  let error = null;
  try {
    await withTimeout(c.start(), 15000, `start (${what})`);
  } catch (e) {
    error = String(e && e.message ? e.message : e);
  }
  if (error === null) {
    await c.stop();
    throw new Error(`${what}: the connection was accepted`);
  }
  if (!pattern.test(error)) throw new Error(`${what}: unexpected error: ${error}`);
  emit("refused", { what, error });
}

// A queue of server-to-client calls so the steps can await them in order.
function inbox(connection, target) {
  const items = [];
  const waiters = [];
  connection.on(target, (...a) => {
    const w = waiters.shift();
    if (w) w(a);
    else items.push(a);
  });
  return (ms) => withTimeout(
    items.length ? Promise.resolve(items.shift()) : new Promise((res) => waiters.push(res)),
    ms, `${target} from the broker`);
}

async function main() {
  const deadline = setTimeout(() => {
    emit("fail", { error: `overall timeout ${args.timeoutMs} ms` });
    process.exit(3);
  }, args.timeoutMs);

  // 1. Refusals.
  const now = Math.floor(Date.now() / 1000);
  await expectRefused("wrong sign (negotiate)", nodeUrl({ signValue: "0".repeat(64) }), {},
    /401/);
  await expectRefused("wrong token (negotiate)", nodeUrl({ token: "wrong-token" }), {}, /401/);
  await expectRefused("old ts (negotiate)", nodeUrl({ ts: now - 3600 }), {}, /401/);
  await expectRefused("wrong sign (WebSocket, skipNegotiation)",
    nodeUrl({ signValue: "f".repeat(64) }),
    { skipNegotiation: true, transport: signalR.HttpTransportType.WebSockets }, /401|WebSocket/);

  // 2. A real connection through negotiation.
  const connection = build(nodeUrl(), { transport: signalR.HttpTransportType.WebSockets });
  const nextReceive = inbox(connection, "Receive");
  const nextExit = inbox(connection, "Exit");
  connection.on("RunApplication", (r) => emit("run_application", { request: r }));
  let closedWith = null;
  connection.onclose((e) => { closedWith = e ? String(e.message || e) : "closed"; });
  await withTimeout(connection.start(), 15000, "start");
  emit("connected", { nodeId: args.nodeId, connectionId: connection.connectionId,
                      state: connection.state });

  const hb = { processCount: 0, cpu: 7, freeMemory: 1500, freeSlots: 0 };
  const first = await withTimeout(connection.invoke("Heartbeat", hb), 10000, "Heartbeat");
  if (!Array.isArray(first)) throw new Error(`Heartbeat returned ${JSON.stringify(first)}`);
  emit("heartbeat", { result: first });
  // Keep heartbeating like a real node while the test drives the broker.
  let heartbeats = 1;
  const ticker = setInterval(() => {
    connection.invoke("Heartbeat", hb).then((r) => {
      if (!Array.isArray(r)) emit("fail", { error: `Heartbeat returned ${JSON.stringify(r)}` });
      heartbeats += 1;
    }).catch((e) => emit("heartbeat_error", { error: String(e.message || e) }));
  }, 1000);
  // Unknown methods are answered with an error and the connection stays up.
  try {
    await withTimeout(connection.invoke("NoSuchMethod", 1), 10000, "NoSuchMethod");
    throw new Error("NoSuchMethod succeeded");
  } catch (e) {
    if (!/unknown method/.test(String(e.message))) throw e;
    emit("unknown_method", { error: String(e.message) });
  }
  emit("ready", {});

  // 3. Blocks pushed by the broker.
  const [block1] = await nextReceive(args.timeoutMs);
  emit("receive", { block: block1 });
  const [block2] = await nextReceive(20000);
  emit("receive", { block: block2 });
  for (const b of [block1, block2]) {
    if (typeof b.blockId !== "string" || !Array.isArray(b.requests) || b.requests.length !== 1)
      throw new Error(`malformed block ${JSON.stringify(b)}`);
  }
  const req = block1.requests[0];
  const saved = await withTimeout(connection.invoke("SaveBlockResponse", {
    blockId: block1.blockId,
    identity: block1.identity,
    results: [{
      requestHash: requestHash(req), url: req.url, statusCode: 200, responseTime: 12,
      headers: { "content-type": "text/plain" }, content: `downloaded by ${args.nodeId}`,
      error: "", depth: req.depth || 0,
    }],
    exception: "",
  }), 10000, "SaveBlockResponse");
  if (saved !== true) throw new Error(`SaveBlockResponse returned ${JSON.stringify(saved)}`);
  emit("saved", { blockId: block1.blockId, url: req.url });

  // 4. The run is exited by the test while block2 is still leased to us.
  const [identity] = await nextExit(args.timeoutMs);
  if (identity !== block2.identity) throw new Error(`Exit(${identity}) for another run`);
  emit("exit", { identity });

  clearInterval(ticker);
  const last = await withTimeout(connection.invoke("Heartbeat", hb), 10000, "last Heartbeat");
  if (!Array.isArray(last)) throw new Error(`Heartbeat returned ${JSON.stringify(last)}`);
  if (closedWith !== null) throw new Error(`connection closed early: ${closedWith}`);
  await connection.stop();
  emit("done", { heartbeats: heartbeats + 1 });
  clearTimeout(deadline);
}

main().catch((e) => {
  emit("fail", { error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
