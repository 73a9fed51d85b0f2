// The inbox of an execution (work waiting for people, with the answers each item offers) and the agent
// console (connected agents, capabilities, current work, last heartbeat).

import { ApiError, BY, api } from "./api.js";
import { ago, fill, h, json, num } from "./dom.js";

const NEEDS_OUTPUT = new Set(["complete", "edit"]);
const DANGER = new Set(["reject", "fail"]);
const HINTS = {
  retry: "try again, a fresh round of attempts, with the params below",
  skip: "skip it: what depends on it goes on, and it shows SKIPPED",
  fail: "give up: its task and the execution fail",
  complete: "done by hand: record the result below",
  acknowledge: "seen: closes the notice and changes nothing else",
};
const SYNC_WAITS_MS = [0, 100, 200, 400, 800, 1600, 3200];

export class Inbox {
  /** @param {(text: string, level?: string) => void} notify */
  constructor(root, notify) {
    this.root = root;
    this.notify = notify;
    this.executionId = null;
    this.loading = null;
    this.onCount = () => {};
    this.past = null; // the items shown as at an earlier event, while replaying
    this.shown = new Map(); // item id -> its element: an open item is drawn once, so what a person types stays
    this.reads = 0; // reads of the inbox begun (data-reads)
    this.readsDone = 0; // reads answered, drawn or not, or failed (data-reads-done)
    this.drawn = 0; // the latest read drawn: an answer that comes after a later read's is not drawn
  }

  /** Read the open items of an execution; resolves to them (null when the read failed). */
  async load(executionId = this.executionId) {
    if (executionId !== this.executionId) this.shown = new Map();
    this.executionId = executionId;
    const asked = executionId;
    const ticket = ++this.reads;
    this.root.dataset.reads = String(ticket);
    try {
      const data = await api(`api/inbox?execution_id=${encodeURIComponent(executionId)}`);
      // Reads overlap (each inbox frame reads until the API shows it) and their answers can come out of order:
      // an earlier read's answer, drawn after a later one's, would drop items opened since (and what was typed
      // into them) and bring back items closed since.
      if (asked === this.executionId && ticket > this.drawn) {
        this.drawn = ticket;
        this.render(data.items);
      }
      return data.items;
    } catch (err) {
      if (asked === this.executionId) fill(this.root, h("li", { class: "error" }, `Inbox unavailable: ${err.message}`));
      return null;
    } finally {
      this.root.dataset.readsDone = String(++this.readsDone); // equal to data-reads: no read under way
    }
  }

  /**
   * Read again after an inbox_opened / inbox_closed frame until the API shows it: the stream can be a moment
   * ahead of the read model that the API reads.
   */
  async sync(frame) {
    const asked = this.executionId;
    const itemId = frame.data && frame.data.item_id;
    const open = frame.type === "inbox_opened";
    for (const wait of SYNC_WAITS_MS) {
      if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
      if (asked !== this.executionId) return;
      const items = await this.load();
      if (!itemId || items === null || items.some((i) => i.item_id === itemId) === open) return;
    }
  }

  /** Show the items as they were at an earlier event, without answers; null: follow the live inbox again. */
  showPast(items) {
    this.past = items;
    if (items === null) {
      this.load();
      return;
    }
    const open = items.filter((item) => item.status === "open");
    this.onCount(open.length);
    const rows = items.map((item) =>
      h(
        "li",
        { class: "inbox-item past", dataset: { testid: "inbox-past-item", itemId: item.item_id, status: item.status } },
        h("span", { class: "chip" }, item.kind),
        " ",
        h("strong", {}, item.title || item.item_id),
        h("span", { class: "muted" }, ` · ${item.status}${item.resolution ? ` (${item.resolution})` : ""}`),
      ),
    );
    fill(this.root, rows.length ? rows : h("li", { class: "muted" }, "No items at that point."));
  }

  render(items) {
    if (this.past) return; // showing an earlier point: the live inbox waits
    this.onCount(items.length);
    const shown = new Map(items.map((item) => [item.item_id, this.shown.get(item.item_id) || this.item(item)]));
    this.shown = shown;
    fill(this.root, items.length ? [...shown.values()] : h("li", { class: "muted" }, "No open items."));
  }

  item(item) {
    const comment = h("input", { type: "text", placeholder: "comment (optional)", class: "inbox-comment" });
    const wantsOutput = (item.actions || []).some((a) => NEEDS_OUTPUT.has(a));
    const output = wantsOutput
      ? h("textarea", {
          class: "inbox-output",
          rows: 4,
          placeholder: "result as JSON (complete / edit)",
          value: item.output ? json(item.output) : "",
        })
      : null;
    const params = (item.actions || []).includes("retry")
      ? h("textarea", {
          class: "inbox-params",
          rows: 4,
          placeholder: "params as JSON (retry)",
          dataset: { testid: "inbox-params" },
          value: json(item.params || {}),
        })
      : null;
    const buttons = (item.actions || []).map((action) =>
      h(
        "button",
        {
          type: "button",
          class: `btn ${DANGER.has(action) ? "danger" : ""}`,
          title: item.kind === "escalation" || item.kind === "acknowledge" ? HINTS[action] || "" : "",
          dataset: { testid: "inbox-answer", action },
          onclick: (ev) => this.answer(ev.currentTarget, item, action, comment.value, output, params),
        },
        action,
      ),
    );
    return h(
      "li",
      { class: "inbox-item", dataset: { testid: "inbox-item", itemId: item.item_id } },
      h("div", {}, h("span", { class: "chip" }, item.kind), " ", h("strong", {}, item.title || item.item_id)),
      h(
        "div",
        { class: "muted" },
        [item.task_id, item.subtask_id].filter(Boolean).join(" / ") || "the execution",
        " · opened ",
        ago(item.opened_at),
      ),
      item.reason ? h("div", { class: "reason" }, item.reason) : null,
      item.action ? h("div", { class: "muted" }, `action: ${item.action}`) : null,
      item.confidence !== null && item.confidence !== undefined
        ? h("div", { class: "muted" }, `confidence: ${num(item.confidence)}`)
        : null,
      item.output ? h("details", {}, h("summary", {}, "result to review"), h("pre", { class: "output" }, json(item.output))) : null,
      h("div", { class: "inbox-answer" }, comment, params, output, h("div", { class: "buttons" }, buttons)),
    );
  }

  async answer(button, item, action, comment, outputField, paramsField) {
    const body = { action, by: BY, comment };
    const fields = [
      [NEEDS_OUTPUT.has(action) ? outputField : null, "output", "The result"],
      [action === "retry" ? paramsField : null, "params", "The params"],
    ];
    for (const [field, key, what] of fields) {
      if (!field || !field.value.trim()) continue;
      try {
        body[key] = JSON.parse(field.value);
      } catch {
        this.notify(`${what} is not valid JSON.`, "error");
        return;
      }
      if (body[key] === null || typeof body[key] !== "object" || Array.isArray(body[key])) {
        this.notify(`${what} must be a JSON object.`, "error");
        return;
      }
    }
    if (body.params && JSON.stringify(body.params) === JSON.stringify(item.params || {})) delete body.params;
    button.disabled = true;
    try {
      await api(`api/inbox/${encodeURIComponent(item.item_id)}`, { method: "POST", body });
      this.notify(`Answered “${item.title || item.item_id}”: ${action}.`, "info");
    } catch (err) {
      this.notify(err instanceof ApiError ? err.detail : String(err), "error");
    } finally {
      button.disabled = false;
      this.load();
    }
  }
}

export class AgentConsole {
  constructor(root) {
    this.root = root;
    this.label = (subtaskId) => subtaskId; // how to name a subtask in "working on ..."
    this.timer = null;
    this.pending = null;
  }

  /** Read GET /api/agents now. */
  async load() {
    try {
      this.render(await api("api/agents"));
    } catch (err) {
      const text = err instanceof ApiError && err.status === 404 ? "This gateway does not list agents." : err.message;
      fill(this.root, h("li", { class: "muted" }, `Agents unavailable: ${text}`));
    }
  }

  /** Read again soon (agent-related events come in bursts). */
  soon() {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.load();
    }, 750);
  }

  /** Also read every `seconds`, for heartbeats and agents that come and go. */
  every(seconds) {
    this.stop();
    this.load();
    this.timer = setInterval(() => this.load(), seconds * 1000);
  }

  stop() {
    clearInterval(this.timer);
    clearTimeout(this.pending);
    this.timer = this.pending = null;
  }

  render(data) {
    const agents = Array.isArray(data) ? data : (data && data.items) || [];
    fill(
      this.root,
      agents.length
        ? agents.map((a) =>
            h(
              "li",
              { class: `agent ${a.online ? "online" : "offline"}`, dataset: { testid: "agent", agentId: a.agent_id } },
              h("div", {},
                h("span", { class: "dot", title: a.status || (a.online ? "online" : "offline") }),
                h("strong", {}, a.name || a.agent_id),
                h("code", { class: "muted" }, ` ${a.agent_id}`),
              ),
              a.role ? h("div", { class: "muted" }, a.role) : null,
              h("div", { class: "caps" }, (a.capabilities || []).map((c) =>
                h("span", { class: "chip", title: c.description || "" }, c.action || String(c)))),
              h("div", { class: "muted" },
                (a.current || []).length ? `working on ${a.current.map((s) => this.label(s)).join(", ")}` : "idle",
                " · heartbeat ",
                ago(a.last_heartbeat),
              ),
            ),
          )
        : h("li", { class: "muted" }, "No agents are known."),
    );
  }
}
