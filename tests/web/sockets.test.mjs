// presence-web's WebSocket protocol against real servers (two nodes): Phoenix-style state and
// diffs across nodes, and hostile sockets (malformed JSON, oversized frames, names over the
// limits, floods, other origins), after which the servers and the cluster still work. Plus the
// admin endpoint's guards and what the web port does not expose.
import {test, before, after} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";
import {Client} from "./client.mjs";
import {eventually, startCluster} from "./cluster.mjs";

let cluster;
before(async () => {
  cluster = await startCluster(2);
});
after(() => cluster?.stop());

async function joined(node, name, room = "lobby", status = "online") {
  const c = new Client(node.web);
  await c.opened;
  c.send("join", {room, name, status});
  await eventually(() => c.of("presence_state").length === 1, `${name}'s presence_state`);
  return c;
}

async function closedWith(c, code, reasonPart) {
  await eventually(() => c.closed !== null, `the socket to be closed with ${code}`);
  assert.equal(c.closed.code, code, `close code (reason: ${c.closed.reason})`);
  assert.match(c.closed.reason, reasonPart);
}

test("two nodes: state on join, joins, updates as leave+join, leaves", async () => {
  const [n1, n2] = cluster;
  const alice = await joined(n1, "alice", "r1");
  assert.deepEqual(alice.of("hello")[0].payload.node.name, "node-1");
  assert.deepEqual(alice.statusOf("alice"), ["online"]);
  const bob = await joined(n2, "bob", "r1");
  await eventually(() => bob.statusOf("alice").length === 1 && alice.statusOf("bob").length === 1, "each sees the other");
  const [meta] = alice.state.bob.metas;
  assert.equal(meta.node, "node-2");
  assert.match(meta.phx_ref, /^[0-9a-f]{16}\.\d+$/);

  bob.send("status", {status: "away"});
  await eventually(() => alice.statusOf("bob").join() === "away", "alice sees bob away");
  const update = alice.of("presence_diff").find((d) => d.payload.joins.bob?.metas[0].status === "away");
  assert.equal(update.payload.joins.bob.metas[0].phx_ref_prev, meta.phx_ref, "the update names the ref it replaced");

  const other = await joined(n1, "carol", "r2");  // another room: r1 does not see her
  bob.close();
  await eventually(() => !("bob" in alice.state), "bob's leave reaches alice");
  assert.ok(!("carol" in alice.state));
  alice.close();
  other.close();
});

test("malformed JSON closes with 1007", async () => {
  const c = new Client(cluster[0].web);
  await c.opened;
  c.raw("{not json");
  await closedWith(c, 1007, /malformed JSON/);
});

test("a frame over the limit closes with 1009", async () => {
  const c = new Client(cluster[0].web);
  await c.opened;
  c.raw(JSON.stringify({event: "join", payload: {room: "x", name: "y".repeat(5000)}}));
  await closedWith(c, 1009, /too big/);
});

test("names, rooms and statuses over the limits or unknown close with 1008 and say what", async () => {
  const cases = [
    [{event: "join", payload: {room: "lobby", name: "n".repeat(33)}}, /name must be 1-32 bytes/],
    [{event: "join", payload: {room: "", name: "x"}}, /room must be 1-32 bytes/],
    [{event: "join", payload: {room: "lobby", name: "a\u0001b"}}, /control character/],
    [{event: "join", payload: {room: "lobby", name: 42}}, /name must be a string/],
    [{event: "join", payload: {room: "lobby", name: "x", status: "asleep"}}, /status must be one of/],
    [{event: "status", payload: {status: "away"}}, /status before join/],
    [{event: "shout", payload: {}}, /unknown event/],
    [[1, 2, 3], /\{event, payload\}/],
  ];
  for (const [message, reason] of cases) {
    const c = new Client(cluster[0].web);
    await c.opened;
    c.raw(JSON.stringify(message));
    await closedWith(c, 1008, reason);
  }
});

test("binary frames close with 1003", async () => {
  const c = new Client(cluster[0].web);
  await c.opened;
  c.raw(Buffer.from([1, 2, 3]));
  await closedWith(c, 1003, /binary/);
});

test("a flood of updates from one socket is cut off by the rate limit", async () => {
  const c = await joined(cluster[0], "flood", "r3");
  for (let i = 0; i < 200; i++) c.send("status", {status: i % 2 ? "away" : "online"});
  await closedWith(c, 1008, /rate limit/);
  const watcher = await joined(cluster[1], "watcher", "r3");
  await eventually(() => !("flood" in watcher.state), "the flooder's presence leaves with its socket");
  watcher.close();
});

test("a page of another origin cannot open a socket", async () => {
  const c = new Client(cluster[0].web, {origin: "http://evil.example"});
  await assert.rejects(c.opened, (e) => e.status === 403);
});

test("after all that, both servers and the cluster still work", async () => {
  const a = await joined(cluster[0], "after-a", "r4");
  const b = await joined(cluster[1], "after-b", "r4");
  await eventually(() => "after-b" in a.state && "after-a" in b.state, "a fresh pair sees each other");
  a.close();
  b.close();
});

test("the web port serves the page only: no admin, no secret", async () => {
  const web = cluster[0].web;
  const secret = readFileSync(cluster.secret, "utf8").trim();
  for (const path of ["", "app.js", "presence.js", "style.css"]) {
    const r = await fetch(web + path);
    assert.equal(r.status, 200, path);
    assert.ok(!(await r.text()).includes(secret));
  }
  for (const [method, path, status] of [["POST", "cut", 405], ["GET", "cut", 404], ["GET", "status", 404],
                                        ["GET", "../server.c++", 404], ["GET", "ws", 400]]) {
    const r = await fetch(web + path, {method});
    assert.equal(r.status, status, `${method} /${path}`);
  }
  const c = await joined(cluster[0], "peek", "r5");
  assert.ok(!JSON.stringify(c.frames).includes(secret));
  c.close();
});

test("the admin endpoint: loopback, the custom header and the page's origin only", async () => {
  const {admin, web} = cluster[1];
  assert.match(admin, /^http:\/\/127\.0\.0\.1:/);
  assert.equal((await fetch(admin + "/cut", {method: "POST"})).status, 403, "no header");
  const foreign = await fetch(admin + "/cut", {method: "POST", headers: {"X-Demo-Admin": "1", Origin: "http://evil.example"}});
  assert.equal(foreign.status, 403, "another origin");
  assert.deepEqual(await (await fetch(admin + "/status")).json(), {offline: false});
  const origin = web.replace(/\/$/, "");
  const cut = await fetch(admin + "/cut", {method: "POST", headers: {"X-Demo-Admin": "1", Origin: origin}});
  assert.equal(cut.status, 200);
  assert.equal(cut.headers.get("access-control-allow-origin"), origin);
  assert.deepEqual(await cut.json(), {offline: true});
  const heal = await fetch(admin + "/heal", {method: "POST", headers: {"X-Demo-Admin": "1"}});
  assert.deepEqual(await heal.json(), {offline: false});
});
