// A WebSocket client of presence-web's protocol for the tests: keeps every frame received, the
// room's state folded with presence.js (as the page does), and how the socket closed.
import WebSocket from "ws";
import {syncDiff, syncState} from "../../examples/presence-web/static/presence.js";

export class Client {
  constructor(web, options = {}) {
    this.frames = [];
    this.state = {};
    this.closed = null;  // {code, reason}
    this.ws = new WebSocket(web.replace(/^http/, "ws") + "ws", options);
    this.fold = true;  // false: stop keeping frames and state (a load generator's clients)
    this.ws.on("message", (data) => {
      if (!this.fold) return;
      const frame = JSON.parse(data.toString());
      this.frames.push(frame);
      if (frame.event === "presence_state") this.state = syncState(this.state, frame.payload);
      if (frame.event === "presence_diff") this.state = syncDiff(this.state, frame.payload);
    });
    this.ws.on("close", (code, reason) => (this.closed = {code, reason: reason.toString()}));
    this.ws.on("error", (e) => (this.error = e));
    this.opened = new Promise((resolve, reject) => {
      this.ws.on("open", resolve);
      this.ws.on("unexpected-response", (req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), {status: res.statusCode})));
      this.ws.on("error", reject);
    });
  }
  send(event, payload = {}) {
    this.ws.send(JSON.stringify({event, payload}));
  }
  raw(data) {
    this.ws.send(data);
  }
  of(event) {
    return this.frames.filter((f) => f.event === event);
  }
  statusOf(key) {
    return (this.state[key]?.metas ?? []).map((m) => m.status);
  }
  close() {
    this.ws.close();
  }
}
