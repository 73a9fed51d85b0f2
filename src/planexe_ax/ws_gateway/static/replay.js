// Replay: a scrubber on the timeline over the execution's events. Moving it shows the tree, the timeline and
// the inbox as they were right after the chosen event (GET /api/executions/{id}?at_seq=N, which replays the
// events up to N through the projector's handlers); "Live" goes back to following the stream.

import { api } from "./api.js";
import { $ } from "./dom.js";

const PAGE = 1000;
const MOST_PAGES = 20; // the scrubber reaches back 20,000 events at most

export class Replay {
  /** @param {{showAt: (answer: object) => void, showLive: () => void, notify: Function}} view */
  constructor(view) {
    this.view = view;
    this.range = $("#replay-range");
    this.label = $("#replay-label");
    this.live = $("#btn-live");
    this.events = []; // {seq, type}, oldest first
    this.executionId = null;
    this.asked = 0;
    this.range.addEventListener("input", () => this.describe());
    this.range.addEventListener("change", () => this.show());
    this.live.addEventListener("click", () => this.goLive());
  }

  get replaying() {
    return !this.live.disabled;
  }

  /** Read the execution's events (newest pages first) and put the scrubber at the newest. */
  async load(executionId) {
    this.executionId = executionId;
    this.events = [];
    this.goLive();
    let cursor = null;
    for (let page = 0; page < MOST_PAGES; page++) {
      const query = `limit=${PAGE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
      const data = await api(`api/executions/${encodeURIComponent(executionId)}/events?${query}`);
      if (executionId !== this.executionId) return;
      this.events.unshift(...data.items.map((e) => ({ seq: e.seq, type: e.type })).reverse());
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    // Live frames may have come while the pages were read: keep each event once, in stream order.
    const bySeq = new Map(this.events.map((e) => [e.seq, e]));
    this.events = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    this.fit();
  }

  /** A live event: the scrubber grows; when following live it stays at the newest. */
  add(frame) {
    if (typeof frame.seq !== "number" || (this.events.length && frame.seq <= this.events.at(-1).seq)) return;
    this.events.push({ seq: frame.seq, type: frame.type });
    this.fit();
  }

  fit() {
    const atEnd = !this.replaying;
    this.range.max = String(Math.max(this.events.length - 1, 0));
    this.range.disabled = this.events.length < 2;
    if (atEnd) this.range.value = this.range.max;
    this.describe();
  }

  describe() {
    const event = this.events[Number(this.range.value)];
    if (!event) {
      this.label.textContent = "no events yet";
      return;
    }
    const where = `event ${Number(this.range.value) + 1} of ${this.events.length} (seq ${event.seq}, ${event.type})`;
    this.label.textContent = this.replaying ? `as at ${where}` : `live · ${where}`;
  }

  async show() {
    const event = this.events[Number(this.range.value)];
    if (!event) return;
    if (Number(this.range.value) === this.events.length - 1 && !this.replaying) return;
    const asked = ++this.asked;
    this.live.disabled = false;
    this.describe();
    try {
      const answer = await api(`api/executions/${encodeURIComponent(this.executionId)}?at_seq=${event.seq}`);
      if (asked === this.asked && this.replaying) this.view.showAt(answer);
    } catch (err) {
      this.view.notify(`Cannot show the execution at seq ${event.seq}: ${err.message}`, "error");
    }
  }

  goLive() {
    const was = this.replaying;
    this.asked++;
    this.live.disabled = true;
    this.range.value = this.range.max;
    this.describe();
    if (was) this.view.showLive();
  }
}
