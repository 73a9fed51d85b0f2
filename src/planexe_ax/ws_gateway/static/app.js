// The dashboard's entry point: routes by URL hash (#/ for the executions list, #/executions/<id> for one
// execution, #/webhooks for the webhooks and their delivery logs), shows notices, and asks for confirmation
// in a dialog of the page.

import { $, h } from "./dom.js";
import { ExecutionView } from "./execution.js";
import { ExecutionList } from "./list.js";
import { AgentConsole } from "./people.js";
import { WebhooksPage } from "./webhooks.js";

const NOTICE_MS = 8000;

/** Show a message for a while; errors stay until closed. */
function notify(text, level = "info") {
  const close = h("button", { type: "button", class: "close", "aria-label": "Dismiss" }, "×");
  const note = h("div", { class: `notice ${level}`, role: level === "error" ? "alert" : "status" }, h("span", {}, text), close);
  close.addEventListener("click", () => note.remove());
  $("#notices").append(note);
  if (level !== "error") setTimeout(() => note.remove(), NOTICE_MS);
}

/** Ask in the page's dialog; resolves true when the user confirms. */
function confirmCancel() {
  const dialog = $("#confirm-dialog");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

const views = {
  list: $("#list-view"),
  execution: $("#execution-view"),
  webhooks: $("#webhooks-view"),
};

const list = new ExecutionList(
  {
    rows: $("#executions-list"),
    plans: $("#plan-select"),
    form: $("#start-form"),
    start: $("#btn-start"),
    refresh: $("#btn-refresh"),
    more: $("#btn-more"),
  },
  notify,
);
const listAgents = new AgentConsole($("#agents-list"));
const execution = new ExecutionView({ notify, confirm: confirmCancel });
const webhooks = new WebhooksPage(
  {
    form: $("#webhook-form"),
    list: $("#webhooks-list"),
    secret: $("#webhook-secret"),
    deliveries: $("#deliveries-list"),
    title: $("#deliveries-title"),
    refresh: $("#btn-deliveries-refresh"),
    dialog: $("#webhook-dialog"),
  },
  notify,
);

function route() {
  const match = location.hash.match(/^#\/executions\/([^/?#]+)/);
  const hooks = !match && location.hash.startsWith("#/webhooks");
  views.list.hidden = Boolean(match) || hooks;
  views.execution.hidden = !match;
  views.webhooks.hidden = !hooks;
  if (hooks) {
    list.hide();
    listAgents.stop();
    execution.close();
    document.title = "Webhooks · PlanExe-AX";
    webhooks.show();
  } else if (match) {
    list.hide();
    listAgents.stop();
    execution.open(decodeURIComponent(match[1]));
  } else {
    execution.close();
    document.title = "PlanExe-AX";
    list.show();
    listAgents.every(15);
  }
}

window.addEventListener("hashchange", route);
route();
