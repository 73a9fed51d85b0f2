// The live stream of one execution over its WebSocket: a snapshot on connect, then one frame per event.
// A dropped connection is opened again with ?after_seq=<last applied sequence>, waiting longer each time.

import { wsUrl } from "./api.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const NOT_FOUND = 4404;
const BAD_POSITION = 4400; // the server refused after_seq: start over from a snapshot
const PING_MS = 20000; // the server answers {"kind": "ping"} with a pong
const SILENT_MS = 50000; // no frame for this long: the connection is dead even if the socket says open

export class ExecutionStream {
  /**
   * @param {string} executionId
   * @param {object} on handlers: snapshot(frame), event(frame), resync(frame), error(frame),
   *   status(state, detail) with state "connecting" | "live" | "waiting" | "gone" | "closed".
   * @param {() => number|null} lastSeq the last sequence applied (null before the first snapshot)
   */
  constructor(executionId, on, lastSeq) {
    this.executionId = executionId;
    this.on = on;
    this.lastSeq = lastSeq;
    this.socket = null;
    this.failures = 0;
    this.timer = null;
    this.pinger = null;
    this.heardAt = 0;
    this.fromScratch = false;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000, "page left the execution");
    this.socket = null;
    this.on.status("closed");
  }

  connect() {
    const seq = this.fromScratch ? null : this.lastSeq();
    this.fromScratch = false;
    const query = seq === null || seq === undefined ? "" : `?after_seq=${seq}`;
    const socket = new WebSocket(wsUrl(`api/executions/${encodeURIComponent(this.executionId)}/stream${query}`));
    this.socket = socket;
    this.on.status("connecting");
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.on.status("live");
      this.heardAt = Date.now();
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.ping(socket), PING_MS);
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      this.failures = 0;
      this.heardAt = Date.now();
      this.dispatch(frame);
    };
    socket.onclose = (close) => {
      if (socket !== this.socket || this.stopped) return;
      this.socket = null;
      clearInterval(this.pinger);
      if (close.code === NOT_FOUND) {
        this.on.status("gone", close.reason || "unknown execution");
        return;
      }
      if (close.code === BAD_POSITION) this.fromScratch = true;
      const wait = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
      this.failures += 1;
      this.on.status("waiting", Math.round(wait));
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }

  ping(socket) {
    if (socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.heardAt > SILENT_MS) {
      socket.close(4000, "no answer to pings"); // onclose reconnects
      return;
    }
    socket.send(JSON.stringify({ kind: "ping" }));
  }

  dispatch(frame) {
    switch (frame.kind) {
      case "snapshot":
        this.on.snapshot(frame);
        break;
      case "event":
        this.on.event(frame);
        break;
      case "resync":
        this.on.resync(frame); // a fresh snapshot follows
        break;
      case "error":
        this.on.error(frame);
        break;
      default:
        break;
    }
  }
}
