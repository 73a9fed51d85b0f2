// The webhooks page (#/webhooks, operator role): register a webhook (its signing secret is shown once),
// list them, disable or enable one (a webhook the delivery service gave up on is enabled again here), rotate
// a secret, delete one, and read a webhook's delivery log with every attempt; a delivery can be sent again. Everything goes through /api/webhooks; a token without the operator role gets 403,
// which the page says in words.

import { ApiError, api } from "./api.js";
import { clock, fill, h, num } from "./dom.js";

const STATUS_CLASS = {
  active: "status-COMPLETED",
  disabled: "status-FAILED",
  pending: "status-PENDING",
  delivered: "status-COMPLETED",
  failed: "status-FAILED",
};

const pill = (status) => h("span", { class: `badge ${STATUS_CLASS[status] || ""}`, title: status }, status);
const hookPath = (id, rest = "") => `api/webhooks/${encodeURIComponent(id)}${rest}`;

export class WebhooksPage {
  /** @param els {form, list, secret, deliveries, title, refresh, empty, dialog}; @param notify (text, level) => void */
  constructor(els, notify) {
    this.els = els;
    this.notify = notify;
    this.hooks = [];
    this.selected = null;
    els.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.create();
    });
    els.refresh.addEventListener("click", () => this.loadDeliveries());
  }

  async show() {
    this.els.secret.hidden = true;
    await this.load();
  }

  /** Say what went wrong, in the words of the API (403: the operator role is needed). */
  failed(what, err) {
    const detail = err instanceof ApiError ? err.detail : String(err);
    const role = err instanceof ApiError && err.status === 403 ? " (webhooks need the operator role)" : "";
    this.notify(`${what}: ${detail}${role}`, "error");
  }

  async load() {
    try {
      this.hooks = (await api("api/webhooks")).items;
    } catch (err) {
      this.failed("Webhooks unavailable", err);
      this.hooks = [];
    }
    const rows = this.hooks.map((w) => this.row(w));
    fill(this.els.list, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No webhooks yet.")));
    if (this.selected && !this.hooks.some((w) => w.webhook_id === this.selected)) this.select(null);
  }

  row(w) {
    const filters = [
      w.event_types.length ? `events: ${w.event_types.join(", ")}` : "every event",
      w.execution_id ? `execution ${w.execution_id}` : null,
      w.plan_id ? `plan ${w.plan_id}` : null,
    ].filter(Boolean);
    const button = (label, onclick, cls = "btn small") => h("button", { type: "button", class: cls, onclick }, label);
    return h(
      "tr",
      { dataset: { testid: "webhook-row", webhookId: w.webhook_id }, class: w.webhook_id === this.selected ? "selected" : "" },
      h("td", {}, h("code", {}, w.url), h("div", { class: "muted" }, w.description || w.webhook_id)),
      h("td", {}, pill(w.status), w.disabled_reason ? h("div", { class: "error" }, w.disabled_reason) : null),
      h("td", { class: "muted" }, filters.join(" · ")),
      h("td", {}, clock(w.created_at), h("div", { class: "muted" }, w.created_by)),
      h(
        "td",
        { class: "actions" },
        button("Deliveries", () => this.select(w.webhook_id)),
        w.status === "disabled"
          ? button("Enable", () => this.setStatus(w, "active"))
          : button("Disable", () => this.setStatus(w, "disabled")),
        button("Rotate secret", () => this.rotate(w)),
        button("Delete", () => this.remove(w), "btn small danger"),
      ),
    );
  }

  async create() {
    const data = new FormData(this.els.form);
    const text = (name) => String(data.get(name) || "").trim();
    const body = { url: text("url"), description: text("description") };
    const types = text("event_types").split(/[\s,]+/).filter(Boolean);
    if (types.length) body.event_types = types;
    if (text("execution_id")) body.execution_id = text("execution_id");
    if (text("plan_id")) body.plan_id = text("plan_id");
    try {
      const made = await api("api/webhooks", { method: "POST", body });
      this.els.form.reset();
      this.showSecret(made, "registered");
      await this.load();
    } catch (err) {
      this.failed("Could not register", err);
    }
  }

  /** The secret is shown once, right after it is made: the API never returns it again. */
  showSecret(hook, what) {
    fill(
      this.els.secret,
      h("strong", {}, `Webhook ${hook.webhook_id} ${what}. `),
      "Its signing secret, shown only now (verify deliveries with any Standard Webhooks library): ",
      h("code", { dataset: { testid: "webhook-secret" } }, hook.secret),
    );
    this.els.secret.hidden = false;
  }

  /** Disable (deliveries wait) or enable again (a webhook the delivery service gave up on resumes). */
  async setStatus(w, status) {
    try {
      await api(hookPath(w.webhook_id), { method: "PATCH", body: { status } });
      this.notify(status === "active" ? `Webhook ${w.webhook_id} enabled: its pending deliveries resume` : `Webhook ${w.webhook_id} disabled: deliveries wait`);
      await this.load();
    } catch (err) {
      this.failed(status === "active" ? "Could not enable" : "Could not disable", err);
    }
  }

  async rotate(w) {
    if (!(await this.ask(`Rotate the secret of ${w.url}?`, "The old secret stops working at once."))) return;
    try {
      this.showSecret(await api(hookPath(w.webhook_id, "/rotate-secret"), { method: "POST" }), "has a new secret");
    } catch (err) {
      this.failed("Could not rotate the secret", err);
    }
  }

  async remove(w) {
    if (!(await this.ask(`Delete the webhook to ${w.url}?`, "Its delivery log goes with it."))) return;
    try {
      await api(hookPath(w.webhook_id), { method: "DELETE" });
      this.notify(`Webhook ${w.webhook_id} deleted`);
      await this.load();
    } catch (err) {
      this.failed("Could not delete", err);
    }
  }

  /** Ask in the page's dialog; resolves true when the user confirms. */
  ask(title, text) {
    const dialog = this.els.dialog;
    fill(dialog.querySelector("h2"), title);
    fill(dialog.querySelector("p"), text);
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  select(webhookId) {
    this.selected = webhookId;
    for (const tr of this.els.list.querySelectorAll("tr[data-webhook-id]")) {
      tr.classList.toggle("selected", tr.dataset.webhookId === webhookId);
    }
    const hook = this.hooks.find((w) => w.webhook_id === webhookId);
    fill(this.els.title, hook ? `Deliveries to ${hook.url}` : "Deliveries");
    this.els.refresh.disabled = !hook;
    if (!hook) {
      fill(this.els.deliveries, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "Choose a webhook above.")));
      return;
    }
    this.loadDeliveries();
  }

  async loadDeliveries() {
    const webhookId = this.selected;
    if (!webhookId) return;
    try {
      const page = await api(hookPath(webhookId, "/deliveries?limit=200"));
      if (webhookId !== this.selected) return; // another webhook was chosen meanwhile
      const rows = page.items.map((d) => this.delivery(webhookId, d));
      fill(this.els.deliveries, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "Nothing delivered yet.")));
    } catch (err) {
      this.failed("Deliveries unavailable", err);
    }
  }

  delivery(webhookId, d) {
    const attempts = d.attempts.map((a) =>
      h(
        "li",
        { dataset: { testid: "attempt" } },
        `#${a.attempt} `,
        h("strong", {}, a.status_code === null ? "no answer" : String(a.status_code)),
        ` in ${num(a.latency_ms)} ms at ${clock(a.at)}`,
        a.error ? h("div", { class: "error" }, a.error) : null,
      ),
    );
    const again = h("button", { type: "button", class: "btn small" }, "Redeliver");
    again.addEventListener("click", async () => {
      again.disabled = true;
      try {
        await api(hookPath(webhookId, `/deliveries/${encodeURIComponent(d.delivery_id)}/redeliver`), { method: "POST" });
        this.notify(`Delivery of ${d.event_type} (seq ${d.seq}) will be sent again`);
        await this.loadDeliveries();
      } catch (err) {
        this.failed("Could not redeliver", err);
        again.disabled = false;
      }
    });
    return h(
      "tr",
      { dataset: { testid: "delivery-row", deliveryId: d.delivery_id, eventId: d.event_id } },
      h("td", {}, d.event_type, h("div", { class: "muted" }, h("code", {}, d.event_id))),
      h("td", {}, h("a", { href: `#/executions/${encodeURIComponent(d.execution_id)}` }, h("code", {}, d.execution_id)),
        h("div", { class: "muted" }, `seq ${d.seq}`)),
      h("td", {}, pill(d.status), d.next_attempt_at ? h("div", { class: "muted" }, `next ${clock(d.next_attempt_at)}`) : null),
      h("td", {}, h("ol", { class: "plain attempts" }, attempts.length ? attempts : h("li", { class: "muted" }, "none yet"))),
      h("td", {}, again),
    );
  }
}
