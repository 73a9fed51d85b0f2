// The plan overview with the progress bar, and the blockers and risks panel; both drawn from the state.

import { ago, badge, clock, duration, fill, h, ms } from "./dom.js";
import { blockers, counts, progress } from "./state.js";

const ORDER = [
  "RUNNING",
  "DISPATCHED",
  "READY",
  "PENDING",
  "BLOCKED",
  "AWAITING_APPROVAL",
  "AWAITING_HUMAN",
  "RETRY_WAIT",
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "SKIPPED",
];

function tally(byStatus) {
  const statuses = Object.keys(byStatus).sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b));
  return statuses.map((s) => h("span", { class: `chip status-${s}`, title: s }, `${byStatus[s]} ${s.toLowerCase()}`));
}

/** Fill the overview (goal, phases, counts, times) and the progress bar. */
export function renderOverview(els, state, now = Date.now()) {
  const ex = state.execution;
  const c = counts(state);
  const pct = progress(state);
  els.progress.setAttribute("aria-valuenow", String(pct));
  els.progress.setAttribute("aria-valuetext", `${pct} %`);
  els.progressFill.style.width = `${pct}%`;
  els.progressFill.className = `progress-fill status-${ex.status}`;
  els.progressText.textContent = `${pct} %`;
  const started = ms(ex.started_at);
  const ran = started === null ? null : (ms(ex.finished_at) ?? now) - started;
  fill(
    els.overview,
    h("p", { class: "goal", dataset: { testid: "plan-goal" } }, state.plan.goal || state.execution.goal || ""),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Plan"),
      h("dd", {}, `${state.plan.title || state.plan.plan_id} (${state.plan.plan_id})`),
      h("dt", {}, "Phases"),
      h("dd", {}, String(state.phases.length), " — ", state.phases.map((p) => p.name || p.phase_id).join(" → ")),
      h("dt", {}, "Tasks"),
      h("dd", { dataset: { testid: "task-counts" } }, `${c.tasksTotal} `, tally(c.tasks)),
      h("dt", {}, "Subtasks"),
      h("dd", {}, `${c.subtasksTotal} `, tally(c.subtasks)),
      h("dt", {}, "Started"),
      h("dd", {}, ex.started_at ? clock(ex.started_at) : "not yet"),
      h("dt", {}, ex.finished_at ? "Finished" : "Running for"),
      h("dd", {}, ex.finished_at ? `${clock(ex.finished_at)} (${duration(ran)})` : duration(ran)),
    ),
  );
}

/** Fill the blockers (blocked, failed, waiting subtasks with reasons) and the plan's risks. */
export function renderBlockersAndRisks(els, state) {
  const ex = state.execution;
  const now = blockers(state);
  const items = now.map((b) =>
    h(
      "li",
      { class: "blocker", dataset: { testid: "blocker", taskId: b.task_id } },
      badge(b.status),
      " ",
      h("strong", {}, b.title || b.task_id),
      h("code", { class: "muted" }, ` ${[b.task_id, b.subtask_id].filter(Boolean).join(" / ")}`),
      b.agent_id ? h("span", { class: "muted" }, ` · ${b.agent_id}`) : null,
      " · ",
      ago(b.since),
      h("div", { class: "reason" }, b.reason || "no reason given"),
    ),
  );
  if (["FAILED", "BLOCKED", "CANCELLED"].includes(ex.status) && ex.reason) {
    items.unshift(h("li", { class: "blocker" }, badge(ex.status), " execution: ", h("span", { class: "reason" }, ex.reason)));
  }
  fill(els.blockers, items.length ? items : h("li", { class: "muted" }, "Nothing is blocked."));
  const risks = state.plan.risks || [];
  fill(
    els.risks,
    risks.length
      ? risks.map((r) =>
          h(
            "li",
            { class: "risk", dataset: { testid: "risk" } },
            h("strong", {}, r.description || r.risk_id),
            r.severity || r.likelihood
              ? h("span", { class: "muted" }, ` (severity ${r.severity ?? "?"}, likelihood ${r.likelihood ?? "?"})`)
              : null,
            r.mitigation ? h("div", { class: "muted" }, `mitigation: ${r.mitigation}`) : null,
          ),
        )
      : h("li", { class: "muted" }, "The plan names no risks."),
  );
}
