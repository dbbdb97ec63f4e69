// The demo page: one WebSocket to the node that served it (protocol: server.c++'s header), the
// room's presences kept with Phoenix's merge rules (presence.js), the cluster panel, and the
// cut/heal buttons (the node's loopback admin endpoint).
import {syncState, syncDiff, list} from "/presence.js";

const $ = (id) => document.getElementById(id);
let socket = null;
let state = {};        // the room's presences, by key
let me = null;         // {room, name} once joined
let chosen = "online"; // the status picked; "typing" shows over it while typing
let sent = null;       // the status last sent
let typingTimer = null;
let admin = null;
let nodeName = "";

function send(event, payload = {}) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({event, payload}));
}

function setStatus(status) {
  if (!me || status === sent) return;
  sent = status;
  send("status", {status});
}

function log(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("log").prepend(li);
  while ($("log").children.length > 50) $("log").lastChild.remove();
}

function badge(text, cls = text) {
  const span = document.createElement("span");
  span.className = `badge ${cls}`;
  span.textContent = text;
  return span;
}

function renderPeople() {
  const people = $("people");
  people.replaceChildren();
  let count = 0;
  list(state, (key, {metas}) => {
    count += metas.length;
    const li = document.createElement("li");
    li.dataset.key = key;
    const name = document.createElement("strong");
    name.textContent = key;
    const where = document.createElement("span");
    where.className = "metas";
    for (const m of metas) {
      const s = badge(m.status || "?");
      s.dataset.status = m.status;
      s.title = `ref ${m.phx_ref}`;
      where.append(s, document.createTextNode(` on ${m.node || "?"} `));
    }
    li.append(name, document.createTextNode(" "), where);
    people.append(li);
  });
  $("count").textContent = count;
}

function renderCluster({self, offline, nodes}) {
  $("offline-banner").hidden = !offline;
  $("cut").disabled = offline;
  $("heal").disabled = !offline;
  const head = document.createElement("tr");
  head.append(Object.assign(document.createElement("th"), {textContent: "node"}),
              Object.assign(document.createElement("th"), {textContent: "from here"}));
  for (const n of nodes) head.append(Object.assign(document.createElement("th"), {textContent: n.name}));
  $("cluster").tHead.replaceChildren(head);
  const rows = nodes.map((n) => {
    const tr = document.createElement("tr");
    tr.dataset.node = n.name;
    const name = Object.assign(document.createElement("td"), {textContent: n.id === self ? `${n.name} (this)` : n.name});
    const here = document.createElement("td");
    here.append(badge(n.status));
    here.dataset.status = n.status;
    tr.append(name, here);
    for (const other of nodes) {
      const td = document.createElement("td");
      if (other.id === n.id) td.textContent = "—";
      else td.append(badge(n.view[other.id] || "?", n.view[other.id] || "gone"));
      tr.append(td);
    }
    return tr;
  });
  $("cluster").tBodies[0].replaceChildren(...rows);
}

function connect() {
  socket = new WebSocket(`ws://${location.host}/ws`);
  $("conn").textContent = "connecting";
  socket.onopen = () => {
    $("conn").textContent = "connected";
    $("conn").className = "badge up";
    if (me) {  // a reconnect: join again; the server's full state then replaces ours (syncState)
      sent = chosen;
      send("join", {...me, status: chosen});
    }
  };
  socket.onclose = (e) => {
    $("conn").textContent = e.reason ? `closed: ${e.reason}` : "disconnected";
    $("conn").className = "badge down";
    setTimeout(connect, 1000);
  };
  socket.onmessage = (e) => {
    const {event, payload} = JSON.parse(e.data);
    const onJoin = (key, current, joined) => {
      if (!current) log(`${key} joined on ${joined.metas.map((m) => m.node).join(", ")}`);
    };
    const onLeave = (key, current, left) => {
      if (current.metas.length === 0) log(`${key} left (was on ${left.metas.map((m) => m.node).join(", ")})`);
    };
    if (event === "hello") {
      nodeName = payload.node.name;
      $("node-name").textContent = nodeName;
      document.title = `deltasync presence: ${nodeName}`;
      admin = payload.admin;
      $("admin").hidden = !admin;
    } else if (event === "joined") {
      $("me-name").textContent = payload.name;
      $("me-room").textContent = payload.room;
      $("me").hidden = false;
    } else if (event === "left") {
      state = {};
      renderPeople();
    } else if (event === "presence_state") {
      state = syncState(state, payload, onJoin, onLeave);
      renderPeople();
    } else if (event === "presence_diff") {
      state = syncDiff(state, payload, onJoin, onLeave);
      renderPeople();
    } else if (event === "cluster") {
      renderCluster(payload);
    }
  };
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  me = {room: $("room").value.trim(), name: $("name").value.trim()};
  sent = chosen;
  state = {};
  send("join", {...me, status: chosen});
});
$("status").addEventListener("change", () => {
  chosen = $("status").value;
  setStatus(chosen);
});
$("typing").addEventListener("input", () => {
  setStatus("typing");
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => setStatus(chosen), 1500);
});
$("leave").addEventListener("click", () => {
  me = null;
  $("me").hidden = true;
  send("leave");
});
for (const [id, path] of [["cut", "/cut"], ["heal", "/heal"]]) {
  $(id).addEventListener("click", async () => {
    try {
      const r = await fetch(admin + path, {method: "POST", headers: {"X-Demo-Admin": "1"}});
      log(`${nodeName} ${path === "/cut" ? "cut off" : "healed"} (${r.status})`);
    } catch (err) {
      log(`admin: ${err}`);
    }
  });
}
connect();
