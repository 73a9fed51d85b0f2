// One execution's page: everything on it follows the execution's WebSocket stream. A snapshot (on connect,
// or after a resync) rebuilds the state; each event frame is applied to it and the parts it touched are
// redrawn at the next animation frame. The only other reads are the event history (once per snapshot), the
// inbox (when inbox events arrive) and the agent list.

import { ApiError, BY, api } from "./api.js";
import { $, STATUS_ICONS, duration, fill, refreshAgo } from "./dom.js";
import { Feed } from "./feed.js";
import { Gantt } from "./gantt.js";
import { renderBlockersAndRisks, renderOverview } from "./panels.js";
import { AgentConsole, Inbox } from "./people.js";
import { Replay } from "./replay.js";
import { PAUSABLE, TERMINAL_EXECUTION, applyEvent, fromSnapshot } from "./state.js";
import { ExecutionStream } from "./stream.js";
import { TaskTree } from "./tree.js";

const HISTORY = 200; // events read from the API when a snapshot arrives
const AGENT_EVENTS = new Set(["subtask_started", "subtask_state", "subtask_result", "task_reassigned"]);
const TARGETS = { pause: "PAUSED", resume: "RUNNING", cancel: "CANCELLED" };

export class ExecutionView {
  /** @param {{notify: Function, confirm: () => Promise<boolean>}} ui */
  constructor(ui) {
    this.ui = ui;
    this.el = {
      title: $("#execution-title"),
      id: $("#execution-id"),
      trace: $("#trace-link"),
      stream: $("#stream-state"),
      status: $("#execution-status"),
      badge: $("#status-badge"),
      reason: $("#execution-reason"),
      error: $("#execution-error"),
      pause: $("#btn-pause"),
      resume: $("#btn-resume"),
      cancel: $("#btn-cancel"),
    };
    this.panels = {
      progress: $("#progress-bar"),
      progressFill: $("#progress-bar .progress-fill"),
      progressText: $("#progress-text"),
      overview: $("#overview"),
      blockers: $("#blockers"),
      risks: $("#risks"),
    };
    this.tree = new TaskTree($("#task-tree"));
    this.gantt = new Gantt($("#gantt"), $("#gantt-legend"), $("#btn-fit"));
    this.feed = new Feed($("#feed"), { task: $("#feed-task"), agent: $("#feed-agent"), type: $("#feed-type") });
    this.inbox = new Inbox($("#inbox"), ui.notify);
    this.inbox.onCount = (n) => ($("#inbox-count").textContent = String(n));
    this.agents = new AgentConsole($("#agents"));
    this.agents.label = (subtaskId) => this.subtaskLabel(subtaskId);
    this.replay = new Replay({
      showAt: (answer) => this.showAt(answer),
      showLive: () => this.showLive(),
      notify: ui.notify,
    });
    this.reset();
    this.el.pause.addEventListener("click", () => this.steer("pause"));
    this.el.resume.addEventListener("click", () => this.steer("resume"));
    this.el.cancel.addEventListener("click", async () => {
      if (await ui.confirm()) this.steer("cancel");
    });
  }

  reset() {
    this.id = null;
    this.state = null;
    this.past = null; // the state as at an earlier event, while the scrubber is not at the newest
    document.body.classList.remove("replaying");
    this.stream = null;
    this.dirty = { all: false, tasks: new Set(), feed: false };
    this.frame = null;
    this.statusSeq = 0; // sequence of the last execution_state applied
    this.busy = false;
  }

  open(executionId) {
    if (this.id === executionId) return;
    this.close();
    this.id = executionId;
    this.el.title.textContent = "Execution";
    this.el.id.textContent = executionId;
    this.el.error.hidden = true;
    $("#execution-view").classList.remove("unknown");
    this.setStatusText("…");
    this.updateControls();
    this.stream = new ExecutionStream(
      executionId,
      {
        snapshot: (f) => this.onSnapshot(f),
        event: (f) => this.onEvent(f),
        resync: (f) => this.ui.notify(`Catching up with the execution (${f.reason || "resync"}).`, "info"),
        error: (f) =>
          f.status === 404 ? this.showError(`Unknown execution ${executionId}.`) : this.ui.notify(f.detail, "error"),
        status: (s, detail) => this.onStreamState(s, detail),
      },
      () => (this.state ? this.state.lastSeq : null),
    );
    this.stream.start();
    this.showTraceLink(executionId);
    this.inbox.load(executionId);
    this.agents.every(5);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  /** Link the execution's trace when the gateway has a trace viewer (PLANEXE_TRACE_URL). */
  async showTraceLink(executionId) {
    this.el.trace.hidden = true;
    try {
      const detail = await api(`/api/executions/${encodeURIComponent(executionId)}`);
      if (executionId !== this.id || !detail.trace_url) return;
      this.el.trace.href = detail.trace_url;
      this.el.trace.title = `trace ${detail.trace_id}`;
      this.el.trace.hidden = false;
    } catch {
      // not projected yet, or no access: the page works without the link
    }
  }

  close() {
    if (this.stream) this.stream.stop();
    this.agents.stop();
    clearInterval(this.ticker);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.reset();
  }

  onSnapshot(frame) {
    this.el.error.hidden = true;
    this.state = fromSnapshot(frame);
    this.statusSeq = frame.last_seq;
    const title = this.state.plan.title || this.state.execution.title || this.state.plan.plan_id;
    this.el.title.textContent = title;
    document.title = `${title} — PlanExe-AX`;
    if (!this.past) {
      this.tree.build(this.state);
      this.gantt.build(this.state);
    }
    this.feed.reset(this.state);
    this.loadHistory(this.id);
    this.replay.load(this.id).catch((err) => this.ui.notify(`Replay unavailable: ${err.message}`, "error"));
    this.dirty.all = true;
    this.schedule();
  }

  async loadHistory(executionId) {
    try {
      const page = await api(`api/executions/${encodeURIComponent(executionId)}/events?limit=${HISTORY}`);
      if (executionId === this.id && this.feed.add(page.items)) {
        this.dirty.feed = true;
        this.schedule();
      }
    } catch (err) {
      this.ui.notify(`Event history unavailable: ${err.message}`, "error");
    }
  }

  onEvent(frame) {
    if (!this.state) return;
    const changed = applyEvent(this.state, frame);
    if (changed.parts.has("execution")) this.statusSeq = frame.seq;
    if (this.feed.add([frame])) this.dirty.feed = true;
    this.replay.add(frame);
    if (changed.task) this.dirty.tasks.add(changed.task.task_id);
    if (changed.parts.size) this.dirty.all = true;
    if (changed.parts.has("inbox")) this.inbox.sync(frame);
    if (AGENT_EVENTS.has(frame.type)) this.agents.soon();
    if (frame.type === "command_rejected") {
      const e = frame.data || {};
      this.ui.notify(`The ${e.command} command was rejected: ${e.reason}`, "error");
    }
    this.schedule();
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Show the tree, the timeline and the inbox as at an earlier event (an answer of `?at_seq=`). */
  showAt(answer) {
    const { tree, inbox, at_seq: seq, ...execution } = answer;
    this.past = fromSnapshot({ last_seq: seq, execution, tree });
    document.body.classList.add("replaying");
    this.tree.build(this.past);
    this.gantt.build(this.past);
    this.inbox.showPast(inbox);
    this.dirty.all = true;
    this.schedule();
  }

  /** Follow the live execution again. */
  showLive() {
    this.past = null;
    document.body.classList.remove("replaying");
    if (this.state) {
      this.tree.build(this.state);
      this.gantt.build(this.state);
    }
    this.inbox.showPast(null);
    this.dirty.all = true;
    this.schedule();
  }

  /** The state on show: an earlier one while replaying, else the live one. */
  shown() {
    return this.past || this.state;
  }

  /** Redraw what changed since the last frame. */
  flush() {
    this.frame = null;
    const state = this.shown();
    if (!state) return;
    if (!this.past) for (const taskId of this.dirty.tasks) this.tree.update(state.tasks.get(taskId));
    if (this.dirty.all || this.dirty.tasks.size) {
      this.renderHead();
      renderOverview(this.panels, state);
      renderBlockersAndRisks(this.panels, state);
      this.gantt.render();
    }
    if (this.dirty.feed) this.feed.render();
    this.dirty = { all: false, tasks: new Set(), feed: false };
  }

  renderHead() {
    const ex = this.shown().execution;
    this.setStatusText(ex.status);
    this.el.reason.hidden = !ex.reason;
    this.el.reason.textContent = ex.reason || "";
    this.updateControls();
  }

  setStatusText(status) {
    this.el.status.textContent = status;
    this.el.status.dataset.status = status;
    this.el.badge.className = `badge big status-${status}`;
    this.el.badge.querySelector(".icon").textContent = STATUS_ICONS[status] || "";
  }

  updateControls() {
    const status = this.state ? this.state.execution.status : null;
    this.el.pause.disabled = this.busy || !PAUSABLE.has(status);
    this.el.resume.disabled = this.busy || status !== "PAUSED";
    this.el.cancel.disabled = this.busy || !status || TERMINAL_EXECUTION.has(status);
  }

  /** Pause, resume or cancel; show the new status as soon as the gateway confirms it. */
  async steer(what) {
    if (!this.state || this.busy) return;
    const executionId = this.id;
    const seqAtIssue = this.state.lastSeq;
    this.busy = true;
    this.updateControls();
    try {
      const detail = await api(`api/executions/${encodeURIComponent(executionId)}`, {
        method: "PATCH",
        body: { status: TARGETS[what], issued_by: BY },
      });
      // The answer shows the command's effect; take it unless the stream has already brought a newer status.
      if (executionId === this.id && this.state && this.statusSeq <= seqAtIssue) {
        Object.assign(this.state.execution, {
          status: detail.status,
          reason: detail.reason,
          started_at: detail.started_at,
          finished_at: detail.finished_at,
        });
      }
    } catch (err) {
      this.ui.notify(err instanceof ApiError ? `Could not ${what}: ${err.detail}` : String(err), "error");
    } finally {
      this.busy = false;
      this.dirty.all = true;
      this.schedule();
    }
  }

  onStreamState(state, detail) {
    const words = {
      connecting: "connecting…",
      live: "live",
      waiting: `connection lost, retrying in ${duration(detail)}`,
      gone: `stream closed: ${detail}`,
      closed: "closed",
    };
    this.el.stream.textContent = words[state] || state;
    this.el.stream.dataset.state = state;
  }

  showError(text) {
    $("#execution-view").classList.add("unknown");
    this.el.error.hidden = false;
    this.el.error.textContent = text;
    fill($("#task-tree"));
  }

  /** "s1 (Task title)" for a subtask of this execution, else the id alone. */
  subtaskLabel(subtaskId) {
    const sub = this.state && (this.state.bySubtaskId.get(subtaskId) || [])[0];
    const task = sub && this.state.tasks.get(sub.task_id);
    return task ? `${subtaskId} (${task.title || task.task_id})` : subtaskId;
  }

  /** Once a second: relative times, and the running bars of the timeline. */
  tick() {
    refreshAgo(document);
    if (this.state && !this.past && !TERMINAL_EXECUTION.has(this.state.execution.status)) {
      renderOverview(this.panels, this.state);
      this.gantt.render();
    }
  }
}
