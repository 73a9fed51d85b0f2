// The Gantt chart: one row per task, grouped by phase, drawn with vis-timeline (static/vendor).
//
// Actual bars are real times: a task's bar runs from when it started to when it finished (or to now while it
// runs). The plan counts in working days, while an execution may take seconds, so planned times cannot share
// the real clock as they are. The shaded band behind each bar is the plan's schedule (earliest start and
// finish from estimates and dependencies) scaled so that the whole plan spans the execution's run so far:
// it shows where each task would have been had the run kept the plan's proportions. The legend says so
// and gives the scale.

import { clock, duration, fill, h, ms, num } from "./dom.js";
import { allTasks } from "./state.js";

const MIN_SPAN_MS = 1; // a run that has just started still gets a scale
const LABEL_CHARS = 40;

function short(text) {
  return text.length > LABEL_CHARS ? `${text.slice(0, LABEL_CHARS - 1)}…` : text;
}

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Where the execution's time axis starts and how long its run has lasted so far, in ms. */
export function runSpan(execution, now = Date.now()) {
  const origin = ms(execution.started_at) ?? ms(execution.created_at) ?? now;
  const end = ms(execution.finished_at) ?? now;
  return { origin, end, span: Math.max(MIN_SPAN_MS, end - origin) };
}

/** Planned [start, end] in ms of every task with planned days, and the scale used. */
export function plannedTimes(state, now = Date.now()) {
  const { origin, span } = runSpan(state.execution, now);
  const finished = Boolean(state.execution.finished_at);
  const tasks = allTasks(state).filter((t) => t.planned);
  const days = Math.max(0, ...tasks.map((t) => t.planned.finish_days));
  const perDay = days > 0 ? span / days : null;
  const times = new Map();
  if (perDay) {
    for (const t of tasks) {
      times.set(t.task_id, [origin + t.planned.start_days * perDay, origin + t.planned.finish_days * perDay]);
    }
  }
  return { origin, span, finished, days, perDay, times };
}

export class Gantt {
  constructor(root, legend, fitButton) {
    this.root = root;
    this.legend = legend;
    this.items = null;
    this.groups = null;
    this.timeline = null;
    this.autoFit = true;
    this.state = null;
    fitButton.addEventListener("click", () => {
      this.autoFit = true;
      this.fit();
    });
  }

  available() {
    return typeof window.vis !== "undefined" && window.vis.Timeline;
  }

  build(state) {
    this.state = state;
    if (!this.available()) {
      fill(this.root, h("p", { class: "muted" }, "The timeline library did not load (static/vendor)."));
      return;
    }
    if (!this.timeline) this.create();
    this.items.clear();
    this.groups.clear();
    const groups = [];
    let order = 0;
    for (const phase of state.phases) {
      groups.push({
        id: `phase:${phase.phase_id}`,
        content: h("strong", { title: phase.name || phase.phase_id }, short(phase.name || phase.phase_id)),
        nestedGroups: phase.tasks.map((t) => t.task_id),
        showNested: true,
        treeLevel: 0,
        order: order++,
        className: "gantt-phase",
      });
      for (const task of phase.tasks) {
        groups.push({
          id: task.task_id,
          content: h("span", { title: `${task.task_id}: ${task.title}` }, short(task.title || task.task_id)),
          treeLevel: 1,
          order: order++,
          className: "gantt-task",
        });
      }
    }
    this.groups.add(groups);
    this.autoFit = true;
    this.render();
  }

  create() {
    const { Timeline, DataSet } = window.vis;
    this.items = new DataSet();
    this.groups = new DataSet();
    this.timeline = new Timeline(this.root, this.items, this.groups, {
      stack: false,
      orientation: { axis: "top" },
      selectable: false,
      editable: false,
      zoomable: true,
      moveable: true,
      showCurrentTime: true,
      groupOrder: "order",
      verticalScroll: true,
      maxHeight: 440,
      zoomMin: 20,
      margin: { item: { horizontal: 0, vertical: 6 } },
      tooltip: { followMouse: true, overflowMethod: "cap" },
    });
    this.timeline.on("rangechange", (props) => {
      if (props.byUser) this.autoFit = false;
    });
  }

  /** Update the bars from the state (call after events and once a second while the execution runs). */
  render(now = Date.now()) {
    const state = this.state;
    if (!state || !this.timeline) return;
    const plan = plannedTimes(state, now);
    const items = [];
    for (const task of allTasks(state)) {
      const planned = plan.times.get(task.task_id);
      if (planned) items.push(this.plannedItem(task, planned, plan));
      const start = ms(task.started_at);
      if (start !== null) items.push(this.actualItem(task, start, ms(task.finished_at) ?? now));
    }
    this.items.update(items);
    this.describe(plan);
    if (this.autoFit) this.fit(now);
  }

  plannedItem(task, [start, end], plan) {
    const title = [
      `<b>${esc(task.title || task.task_id)}</b> — planned`,
      `plan days ${num(task.planned.start_days)} → ${num(task.planned.finish_days)} of ${num(plan.days)}`,
      `scaled to +${duration(start - plan.origin)} → +${duration(end - plan.origin)}`,
    ].join("<br>");
    return {
      id: `plan:${task.task_id}`,
      group: task.task_id,
      type: "background",
      start: new Date(start),
      end: new Date(Math.max(end, start + 1)),
      className: "gantt-planned",
      content: "",
      title,
    };
  }

  actualItem(task, start, end) {
    const running = !task.finished_at;
    const title = [
      `<b>${esc(task.title || task.task_id)}</b> — ${esc(task.status)}`,
      `started ${esc(clock(task.started_at))}`,
      running ? `running for ${duration(end - start)}` : `finished ${esc(clock(task.finished_at))} (${duration(end - start)})`,
    ].join("<br>");
    return {
      id: `run:${task.task_id}`,
      group: task.task_id,
      type: "range",
      start: new Date(start),
      end: new Date(Math.max(end, start + 1)),
      className: `gantt-actual status-${task.status}${running ? " running" : ""}`,
      content: "",
      title,
    };
  }

  describe(plan) {
    const parts = [
      h("span", { class: "legend-swatch actual" }),
      " actual: when each task ran (start → finish, or → now while running). ",
      h("span", { class: "legend-swatch planned" }),
    ];
    if (plan.perDay) {
      parts.push(
        ` planned: the plan's schedule (${num(plan.days)} working days from estimates and dependencies) ` +
          `scaled to this run's ${duration(plan.span)}${plan.finished ? "" : " so far"}, ` +
          `so 1 plan day ≈ ${duration(plan.perDay)}. ` +
          "Compare positions and proportions, not lengths in days.",
      );
    } else {
      parts.push(" planned: this plan has no schedule to compare with.");
    }
    fill(this.legend, parts);
  }

  fit(now = Date.now()) {
    if (!this.timeline || !this.state) return;
    const { origin, end } = runSpan(this.state.execution, now);
    const stops = this.items.get().map((item) => +item.end);
    const last = Math.max(end, ...stops);
    const pad = Math.max(10, (last - origin) * 0.04);
    this.timeline.setWindow(new Date(origin - pad), new Date(last + pad), { animation: false });
  }

  destroy() {
    if (this.timeline) this.timeline.destroy();
    this.timeline = null;
  }
}
