// The local state of one execution: built from a stream snapshot, then kept current by applying each event
// the way the projector applies it to the read model (src/planexe_ax/readmodel/projection.py). Pure: no DOM.

export const TERMINAL_EXECUTION = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
export const TERMINAL_TASK = new Set(["COMPLETED", "FAILED", "CANCELLED", "SKIPPED"]);
const DONE = new Set(["COMPLETED", "SKIPPED"]); // skipped work counts as done
export const MOVING = new Set(["DISPATCHED", "RUNNING"]);
export const BLOCKING = new Set(["BLOCKED", "FAILED", "RETRY_WAIT", "AWAITING_APPROVAL", "AWAITING_HUMAN"]);
export const PAUSABLE = new Set(["QUEUED", "RUNNING", "BLOCKED"]);

const key = (taskId, subtaskId) => `${taskId}/${subtaskId}`;

/** State from a `snapshot` frame ({last_seq, execution, tree}). */
export function fromSnapshot(frame) {
  const state = {
    lastSeq: frame.last_seq,
    execution: { ...frame.execution },
    plan: frame.tree.plan,
    phases: frame.tree.phases,
    tasks: new Map(),
    subtasks: new Map(),
    bySubtaskId: new Map(),
  };
  for (const phase of state.phases) {
    for (const task of phase.tasks) {
      task.phase_id = phase.phase_id;
      task.phase_name = phase.name;
      state.tasks.set(task.task_id, task);
      for (const sub of task.subtasks) {
        sub.task_id = task.task_id;
        state.subtasks.set(key(task.task_id, sub.subtask_id), sub);
        const same = state.bySubtaskId.get(sub.subtask_id) || [];
        same.push(sub);
        state.bySubtaskId.set(sub.subtask_id, same);
      }
    }
  }
  return state;
}

/** Every task, in plan order. */
export function allTasks(state) {
  return [...state.tasks.values()];
}

function findSubtask(state, taskId, subtaskId) {
  if (!subtaskId) return null;
  if (taskId) return state.subtasks.get(key(taskId, subtaskId)) || null;
  return (state.bySubtaskId.get(subtaskId) || [])[0] || null;
}

/**
 * Apply an `event` frame. Frames at or below the last applied sequence are skipped (a reconnect may send
 * them again). Returns what changed: {parts: Set of "execution" | "task" | "inbox" | "agents", task, subtask}.
 */
export function applyEvent(state, frame) {
  const changed = { parts: new Set(), task: null, subtask: null };
  if (typeof frame.seq === "number") {
    if (frame.seq <= state.lastSeq) return changed;
    state.lastSeq = frame.seq;
  }
  const event = frame.data || {};
  const ts = frame.ts || event.ts;
  switch (frame.type) {
    case "execution_state":
      applyExecutionState(state.execution, event, ts);
      changed.parts.add("execution");
      break;
    case "task_state":
      changed.task = applyTaskState(state, frame.task_id, event, ts);
      if (changed.task) changed.parts.add("task");
      break;
    case "subtask_state":
      changed.subtask = applySubtaskState(state, frame, event, ts);
      // Its task's move, decided with it, rides in it (a task_state event of its own).
      if (event.task_state) applyTaskState(state, event.task_state.task_id, event.task_state, event.task_state.ts || ts);
      break;
    case "subtask_progress": {
      const sub = findSubtask(state, frame.task_id, frame.subtask_id);
      if (sub && !TERMINAL_TASK.has(sub.status)) {
        sub.progress = event.percent;
        sub.message = event.message || "";
        sub.updated_at = ts;
        changed.subtask = sub;
      }
      break;
    }
    case "subtask_started": {
      const sub = findSubtask(state, frame.task_id, frame.subtask_id);
      if (sub) {
        if (frame.agent_id) sub.agent_id = frame.agent_id;
        changed.subtask = sub;
      }
      changed.parts.add("agents");
      break;
    }
    case "inbox_opened":
    case "inbox_closed":
      changed.parts.add("inbox");
      break;
    default:
      break;
  }
  if (changed.subtask) {
    changed.task = state.tasks.get(changed.subtask.task_id) || null;
    changed.parts.add("task");
  }
  return changed;
}

function applyTaskState(state, taskId, event, ts) {
  const task = state.tasks.get(taskId);
  if (!task) return null;
  task.status = event.status;
  task.reason = event.reason || "";
  task.updated_at = ts;
  if (event.status === "RUNNING" && !task.started_at) task.started_at = ts;
  if (TERMINAL_TASK.has(event.status)) task.finished_at = ts;
  return task;
}

function applyExecutionState(execution, event, ts) {
  execution.status = event.status;
  execution.reason = event.reason || "";
  execution.updated_at = ts;
  if (event.status === "RUNNING" && !execution.started_at) execution.started_at = ts;
  if (TERMINAL_EXECUTION.has(event.status)) execution.finished_at = ts;
}

function applySubtaskState(state, frame, event, ts) {
  const sub = findSubtask(state, frame.task_id, frame.subtask_id);
  if (!sub) return null;
  sub.status = event.status;
  sub.reason = event.reason || "";
  sub.updated_at = ts;
  if (frame.attempt !== null && frame.attempt !== undefined) sub.attempt = frame.attempt;
  if (frame.agent_id) sub.agent_id = frame.agent_id;
  if (event.output !== null && event.output !== undefined) sub.output = event.output;
  if (event.confidence !== null && event.confidence !== undefined) sub.confidence = event.confidence;
  // An attempt began: RUNNING, or an end that says when (it ended before its start was announced). What the
  // previous attempt ended with no longer describes the subtask.
  const began = event.status === "RUNNING" ? ts : event.started_at;
  if (began) {
    sub.started_at = began;
    sub.finished_at = null;
    sub.error = null;
  }
  if (event.status === "FAILED") sub.error = event.reason || "";
  if (TERMINAL_TASK.has(event.status)) sub.finished_at = ts;
  if (event.status === "COMPLETED") sub.progress = 100;
  const task = state.tasks.get(sub.task_id);
  if (task && typeof frame.attempt === "number") task.attempts = Math.max(task.attempts || 0, frame.attempt);
  return sub;
}

/** Python's round(x, 1): the nearest tenth of the exact binary value, ties (x.25, x.75) to the even tenth. */
export function round1(x) {
  if (Number.isInteger(x * 4) && !Number.isInteger(x * 2)) {
    const tenths = Math.floor(x * 10);
    return (tenths % 2 === 0 ? tenths : tenths + 1) / 10;
  }
  return Number(x.toFixed(1)); // toFixed rounds the exact binary value, so only exact ties differ
}

/** Percent of subtasks completed or skipped, 100 once the execution completed (as the API's `progress`). */
export function progress(state) {
  if (state.execution.status === "COMPLETED") return 100;
  const subs = [...state.subtasks.values()];
  if (!subs.length) return 0;
  const done = subs.filter((s) => DONE.has(s.status)).length;
  return round1((100 * done) / subs.length);
}

/** Counts of tasks and subtasks by status. */
export function counts(state) {
  const tally = (items) => items.reduce((acc, x) => ({ ...acc, [x.status]: (acc[x.status] || 0) + 1 }), {});
  const tasks = allTasks(state);
  const subs = [...state.subtasks.values()];
  return { tasks: tally(tasks), subtasks: tally(subs), tasksTotal: tasks.length, subtasksTotal: subs.length };
}

/**
 * What holds the execution back, with why: subtasks blocked, failed, waiting to retry or for a person (as the
 * API's `blockers`), and tasks held as a whole (a task waiting for approval before it starts).
 */
export function blockers(state) {
  const held = [...state.subtasks.values()]
    .filter((s) => BLOCKING.has(s.status))
    .map((s) => ({
      task_id: s.task_id,
      subtask_id: s.subtask_id,
      title: (state.tasks.get(s.task_id) || {}).title || "",
      status: s.status,
      reason: s.error || s.reason || "",
      agent_id: s.agent_id,
      since: s.updated_at,
    }));
  const named = new Set(held.map((b) => b.task_id));
  const tasks = allTasks(state)
    .filter((t) => BLOCKING.has(t.status) && !named.has(t.task_id))
    .map((t) => ({
      task_id: t.task_id,
      subtask_id: null,
      title: t.title,
      status: t.status,
      reason: t.reason || "",
      agent_id: null,
      since: t.updated_at || t.started_at,
    }));
  return [...tasks, ...held];
}

/** A task's agents: those working on it now, else the last ones that did. */
export function agentsOf(task) {
  const moving = task.subtasks.filter((s) => s.agent_id && MOVING.has(s.status)).map((s) => s.agent_id);
  const any = task.subtasks.filter((s) => s.agent_id).map((s) => s.agent_id);
  return [...new Set(moving.length ? moving : any)];
}

/** A task's progress in percent: the mean of its subtasks' progress (100 when it completed). */
export function taskProgress(task) {
  if (DONE.has(task.status)) return 100;
  if (!task.subtasks.length) return 0;
  return task.subtasks.reduce((sum, s) => sum + (DONE.has(s.status) ? 100 : s.progress || 0), 0) /
    task.subtasks.length;
}

/** The latest time anything happened to a task. */
export function lastUpdate(task) {
  const times = [task.started_at, task.finished_at, ...task.subtasks.map((s) => s.updated_at)].filter(Boolean);
  return times.sort((a, b) => Date.parse(a) - Date.parse(b)).at(-1) || null;
}
