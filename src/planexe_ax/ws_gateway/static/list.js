// The executions list with a form that starts an execution of a catalog plan. The list is read from the API
// when shown and, while an execution in it is still open, again every few seconds (each execution's own page
// follows it live over its WebSocket).

import { ApiError, BY, api } from "./api.js";
import { badge, clock, fill, h } from "./dom.js";
import { TERMINAL_EXECUTION } from "./state.js";

const REFRESH_MS = 5000;

export const executionHref = (id) => `#/executions/${encodeURIComponent(id)}`;

export class ExecutionList {
  /** @param els {rows, plans, form, start, refresh, more}; @param notify (text, level) => void */
  constructor(els, notify) {
    this.els = els;
    this.notify = notify;
    this.cursor = null;
    this.timer = null;
    this.open = false;
    this.extended = false;
    this.shown = 0;
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.start();
    });
    els.refresh.addEventListener("click", () => this.show());
    els.more.addEventListener("click", () => this.loadExecutions(true));
  }

  async show() {
    this.hide();
    const shown = this.shown;
    this.extended = false;
    await Promise.all([this.loadPlans(), this.loadExecutions()]);
    if (shown !== this.shown) return; // left (or shown again) meanwhile
    this.timer = setInterval(() => {
      if (this.open && !this.extended) this.loadExecutions(); // not after "More": it would drop the pages read
    }, REFRESH_MS);
  }

  hide() {
    this.shown += 1;
    clearInterval(this.timer);
    this.timer = null;
  }

  async loadPlans() {
    const select = this.els.plans;
    try {
      const data = await api("api/plans?limit=500");
      const current = select.value;
      fill(
        select,
        data.items.length
          ? data.items.map((p) =>
              h("option", { value: p.plan_id }, `${p.title || p.plan_id} — ${p.tasks} tasks (${p.plan_id})`),
            )
          : h("option", { value: "" }, "no plans: upload one with POST /api/plans or `planexe-ax plan import PATH --save`"),
      );
      if (data.items.some((p) => p.plan_id === current)) select.value = current;
      this.els.start.disabled = !data.items.length;
    } catch (err) {
      this.notify(`Plans unavailable: ${err.message}`, "error");
    }
  }

  async loadExecutions(more = false) {
    const query = more && this.cursor ? `&cursor=${encodeURIComponent(this.cursor)}` : "";
    try {
      const data = await api(`api/executions?limit=50${query}`);
      this.cursor = data.next_cursor;
      this.extended = this.extended || more;
      const open = data.items.some((x) => !TERMINAL_EXECUTION.has(x.status));
      this.open = more ? this.open || open : open;
      this.els.more.hidden = !data.next_cursor;
      const rows = data.items.map((x) => row(x));
      if (more) this.els.rows.append(...rows);
      else fill(this.els.rows, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No executions yet.")));
    } catch (err) {
      this.notify(`Executions unavailable: ${err.message}`, "error");
    }
  }

  async start() {
    const planId = this.els.plans.value;
    if (!planId) return;
    this.els.start.disabled = true;
    try {
      const execution = await api("api/executions", { method: "POST", body: { plan_id: planId, issued_by: BY } });
      location.hash = executionHref(execution.execution_id);
    } catch (err) {
      this.notify(err instanceof ApiError ? `Could not start: ${err.detail}` : String(err), "error");
    } finally {
      this.els.start.disabled = false;
    }
  }
}

function row(x) {
  const link = h("a", { href: executionHref(x.execution_id) }, x.title || x.plan_id);
  return h(
    "tr",
    { dataset: { testid: "execution-row", executionId: x.execution_id } },
    h("td", {}, link, h("div", { class: "muted" }, h("code", {}, x.execution_id))),
    h("td", {}, badge(x.status)),
    h(
      "td",
      {},
      h(
        "span",
        { class: "meter wide", title: `${x.progress} %` },
        h("span", { class: `meter-fill status-${x.status}`, style: `width:${x.progress}%` }),
        h("span", { class: "meter-text" }, `${x.progress}%`),
      ),
    ),
    h("td", {}, clock(x.created_at)),
    h("td", {}, x.finished_at ? clock(x.finished_at) : x.started_at ? `since ${clock(x.started_at)}` : "—"),
  );
}
