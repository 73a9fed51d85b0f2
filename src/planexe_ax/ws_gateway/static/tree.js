// The task tree: phases → tasks → subtasks, with status icons, agent, progress and last update; each task
// and subtask opens to show its details and output. The tree is built once per snapshot (the plan does not
// change during an execution) and then each task is refilled when an event touches it, so what is open
// stays open.

import { ago, fill, h, icon, json, num } from "./dom.js";
import { agentsOf, lastUpdate, taskProgress } from "./state.js";

export class TaskTree {
  constructor(root) {
    this.root = root;
    this.tasks = new Map(); // task_id -> {summary, body, subtasks: Map(subtask_id -> details)}
    this.phaseCounts = new Map(); // phase_id -> element with "n tasks · m done"
    this.state = null;
  }

  /** Build the whole tree from a fresh state. */
  build(state) {
    const open = new Set([...this.root.querySelectorAll("details[open]")].map((d) => d.id));
    this.state = state;
    this.tasks.clear();
    this.phaseCounts.clear();
    const phases = state.phases.map((phase) => {
      const count = h("span", { class: "muted phase-count" });
      this.phaseCounts.set(phase.phase_id, count);
      return h(
        "section",
        { class: "phase", dataset: { phaseId: phase.phase_id } },
        h("h3", {}, phase.name || phase.phase_id, " ", count),
        phase.description ? h("p", { class: "muted" }, phase.description) : null,
        phase.tasks.map((task) => this.buildTask(task)),
      );
    });
    fill(this.root, phases.length ? phases : h("p", { class: "muted" }, "This plan has no tasks."));
    for (const task of state.tasks.values()) this.update(task);
    for (const id of open) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    }
  }

  buildTask(task) {
    const summary = h("summary", { class: "task-summary" });
    const subtasks = new Map();
    const list = h(
      "ul",
      { class: "subtasks" },
      task.subtasks.map((sub) => {
        const details = h("details", {
          class: "subtask",
          id: `subtask-${task.task_id}-${sub.subtask_id}`,
          dataset: { testid: "subtask-row", subtaskId: sub.subtask_id },
        });
        subtasks.set(sub.subtask_id, details);
        return h("li", {}, details);
      }),
    );
    const body = h("div", { class: "task-body" });
    const details = h(
      "details",
      { class: "task", id: `task-${task.task_id}`, dataset: { testid: "task-row", taskId: task.task_id } },
      summary,
      body,
      list,
    );
    this.tasks.set(task.task_id, { details, summary, body, subtasks });
    return details;
  }

  /** Refill one task (and its subtasks) from the state. */
  update(task) {
    const nodes = this.tasks.get(task.task_id);
    if (!nodes) return;
    nodes.details.dataset.status = task.status;
    const agents = agentsOf(task);
    const pct = taskProgress(task);
    fill(
      nodes.summary,
      icon(task.status),
      h("span", { class: "task-title" }, task.title || task.task_id),
      h("code", { class: "muted" }, task.task_id),
      h("span", { class: "task-agent", title: "agent" }, agents.length ? agents.join(", ") : "—"),
      meter(pct, task.status),
      ago(lastUpdate(task)),
    );
    fill(nodes.body, taskFacts(task));
    for (const sub of task.subtasks) {
      const details = nodes.subtasks.get(sub.subtask_id);
      if (details) fillSubtask(details, sub);
    }
    this.updatePhase(task.phase_id);
  }

  updatePhase(phaseId) {
    const phase = this.state.phases.find((p) => p.phase_id === phaseId);
    const el = this.phaseCounts.get(phaseId);
    if (!phase || !el) return;
    const done = phase.tasks.filter((t) => t.status === "COMPLETED").length;
    el.textContent = `${phase.tasks.length} task${phase.tasks.length === 1 ? "" : "s"} · ${done} done`;
  }
}

function meter(pct, status) {
  return h(
    "span",
    { class: `meter status-${status}`, title: `${num(pct)} %` },
    h("span", { class: "meter-fill", style: `width:${Math.max(0, Math.min(100, pct))}%` }),
    h("span", { class: "meter-text" }, `${Math.round(pct)}%`),
  );
}

function taskFacts(task) {
  const planned = task.planned
    ? `plan days ${num(task.planned.start_days)} → ${num(task.planned.finish_days)}`
    : "no planned dates";
  const facts = [
    task.assignee_role ? `role: ${task.assignee_role}` : null,
    task.estimated_hours ? `estimate: ${num(task.estimated_hours)} h` : null,
    planned,
    task.prerequisites && task.prerequisites.length ? `after: ${task.prerequisites.join(", ")}` : null,
    task.attempts ? `attempts: ${task.attempts}` : null,
    task.human_required ? "needs a person" : null,
    task.approval_required ? "needs approval" : null,
  ].filter(Boolean);
  return [
    task.description ? h("p", {}, task.description) : null,
    h("p", { class: "muted" }, facts.join(" · ")),
    task.reason ? h("p", { class: "reason" }, task.reason) : null,
  ];
}

function fillSubtask(details, sub) {
  details.dataset.status = sub.status;
  const summary = h(
    "summary",
    {},
    icon(sub.status),
    h("code", {}, sub.subtask_id),
    h("span", { class: "action" }, sub.action),
    h("span", { class: "task-agent", title: "agent" }, sub.agent_id || "—"),
    meter(sub.status === "COMPLETED" ? 100 : sub.progress || 0, sub.status),
    ago(sub.updated_at),
  );
  const facts = [
    `status: ${sub.status}`,
    sub.attempt ? `attempt ${sub.attempt}` : null,
    sub.confidence !== null && sub.confidence !== undefined ? `confidence ${num(sub.confidence)}` : null,
    sub.human_required ? "done by a person" : null,
  ].filter(Boolean);
  const why = sub.error || sub.reason;
  fill(
    details,
    summary,
    h(
      "div",
      { class: "subtask-body" },
      sub.description ? h("p", {}, sub.description) : null,
      h("p", { class: "muted" }, facts.join(" · ")),
      sub.message ? h("p", { class: "muted" }, `last progress: ${sub.message}`) : null,
      why ? h("p", { class: "reason" }, why) : null,
      sub.output
        ? h("pre", { class: "output", dataset: { testid: "subtask-output" } }, json(sub.output))
        : h("p", { class: "muted" }, "No output yet."),
    ),
  );
}
