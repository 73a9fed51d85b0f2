// The activity feed: the execution's events, newest first, filterable by task, agent and event type. It
// starts from the latest page of GET /api/executions/{id}/events and grows with the stream's event frames.

import { clock, fill, h } from "./dom.js";

const KEEP = 1000; // events held; older ones drop off the end
const SHOW = 300; // rows drawn at most

const TYPES = [
  "execution_created",
  "execution_state",
  "task_state",
  "subtask_state",
  "subtask_started",
  "subtask_progress",
  "subtask_result",
  "subtask_rejected",
  "subtask_blocked",
  "task_paused",
  "task_reassigned",
  "inbox_opened",
  "inbox_closed",
  "command_rejected",
];

/** One line saying what an event is about. */
export function describe(item) {
  const e = item.data || {};
  const why = e.reason ? ` — ${e.reason}` : "";
  switch (item.type) {
    case "execution_created":
      return `execution created for plan ${(e.plan && (e.plan.title || e.plan.plan_id)) || (e.plan_ref && e.plan_ref.plan_id) || ""}`;
    case "execution_state":
      return `execution → ${e.status}${why}`;
    case "task_state":
      return `→ ${e.status}${why}`;
    case "subtask_state":
      return `→ ${e.status}${why}`;
    case "subtask_started":
      return "taken by the agent";
    case "subtask_progress":
      return `${Math.round(e.percent)}%${e.message ? ` ${e.message}` : ""}`;
    case "subtask_result":
      return e.ok ? "reported a result" : `reported a failure: ${e.error || ""}`;
    case "subtask_rejected":
      return `rejected (${e.reason_code})${why}`;
    case "subtask_blocked":
      return `blocked${why}`;
    case "task_paused":
      return `${e.paused ? "paused" : "resumed"}${e.by ? ` by ${e.by}` : ""}`;
    case "task_reassigned":
      return `reassigned to ${item.agent_id || "?"}${e.by ? ` by ${e.by}` : ""}`;
    case "inbox_opened":
      return `inbox: ${e.kind} — ${e.title || e.reason || ""}`;
    case "inbox_closed":
      return `inbox closed: ${e.resolution}${e.by ? ` by ${e.by}` : ""}${e.comment ? ` (${e.comment})` : ""}`;
    case "command_rejected":
      return `command ${e.command} rejected${why}`;
    default:
      return item.type;
  }
}

/** An event and, when it is a `subtask_state` carrying its task's `task_state`, that one on its own (same seq). */
function withCarried(item) {
  const carried = item.type === "subtask_state" && item.data && item.data.task_state;
  if (!carried) return [item];
  const { event_id, type, task_id, subtask_id, agent_id, attempt, ts } = carried;
  return [item, { seq: item.seq, event_id, type, task_id, subtask_id, agent_id, attempt, ts, data: carried }];
}

/** By sequence, newest first; at one sequence the carried `task_state` before the decision it rode in, as the API. */
function newestFirst(a, b) {
  return b.seq - a.seq || (b.type === "task_state") - (a.type === "task_state");
}

export class Feed {
  constructor(root, filters) {
    this.root = root;
    this.filters = filters; // {task, agent, type} <select> elements
    this.items = []; // newest first
    this.seen = new Set();
    for (const select of Object.values(filters)) select.addEventListener("change", () => this.render());
  }

  /** Start over for an execution: the task filter lists its tasks. */
  reset(state) {
    this.items = [];
    this.seen.clear();
    const tasks = [...state.tasks.values()].map((t) => h("option", { value: t.task_id }, `${t.task_id} · ${t.title}`));
    fill(this.filters.task, h("option", { value: "" }, "all tasks"), tasks);
    fill(this.filters.type, h("option", { value: "" }, "all types"), TYPES.map((t) => h("option", { value: t }, t)));
    this.refreshAgents();
    this.render();
  }

  /**
   * Add events (any order); duplicates (by event id) are ignored. A stream frame's `subtask_state` that carries its
   * task's `task_state` is two events, as the API lists them. Returns true when something was added.
   */
  add(items) {
    let added = false;
    for (const item of items.flatMap(withCarried)) {
      if (this.seen.has(item.event_id)) continue;
      this.seen.add(item.event_id);
      this.items.push(item);
      added = true;
    }
    if (!added) return false;
    this.items.sort(newestFirst);
    for (const dropped of this.items.splice(KEEP)) this.seen.delete(dropped.event_id);
    this.refreshAgents();
    return true;
  }

  refreshAgents() {
    const select = this.filters.agent;
    const agents = [...new Set(this.items.map((i) => i.agent_id).filter(Boolean))].sort();
    const known = new Set([...select.options].map((o) => o.value));
    if (agents.every((a) => known.has(a)) && select.options.length) return;
    const current = select.value;
    fill(select, h("option", { value: "" }, "all agents"), agents.map((a) => h("option", { value: a }, a)));
    select.value = agents.includes(current) ? current : "";
  }

  matches(item) {
    const { task, agent, type } = this.filters;
    return (
      (!task.value || item.task_id === task.value) &&
      (!agent.value || item.agent_id === agent.value) &&
      (!type.value || item.type === type.value)
    );
  }

  render() {
    const shown = this.items.filter((item) => this.matches(item)).slice(0, SHOW);
    fill(
      this.root,
      shown.length
        ? shown.map((item) =>
            h(
              "li",
              { class: `feed-item type-${item.type}`, dataset: { testid: "feed-item", seq: String(item.seq) } },
              h("time", { datetime: item.ts || "", class: "muted" }, clock(item.ts)),
              h("span", { class: "feed-type" }, item.type),
              h("span", { class: "feed-where" }, [item.task_id, item.subtask_id].filter(Boolean).join(" / ")),
              item.agent_id ? h("span", { class: "feed-agent" }, item.agent_id) : null,
              h("span", { class: "feed-text" }, describe(item)),
            ),
          )
        : h("li", { class: "muted" }, this.items.length ? "No event matches the filters." : "No events yet."),
    );
  }
}
