// Small DOM and formatting helpers shared by the dashboard modules. Text always goes in as text nodes,
// never as HTML, so names and outputs from plans and agents cannot inject markup.

/** Create an element: h("div", {class: "x", dataset: {id: "1"}, onclick: fn}, "text", child, [more]). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") el.style.cssText = value;
    else if (key === "value") el.value = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export const STATUS_ICONS = {
  PENDING: "○",
  READY: "◔",
  CREATED: "○",
  QUEUED: "◔",
  DISPATCHED: "➤",
  RUNNING: "▶",
  BLOCKED: "⚠",
  PAUSED: "‖",
  AWAITING_APPROVAL: "✍",
  AWAITING_HUMAN: "☺",
  RETRY_WAIT: "↻",
  COMPLETED: "✔",
  FAILED: "✖",
  CANCELLED: "⊘",
  SKIPPED: "↷",
};

/** A status badge: icon and word, coloured by status (app.css `.status-<STATUS>`). */
export function badge(status, props = {}) {
  return h(
    "span",
    { class: `badge status-${status}`, title: status, ...props },
    h("span", { class: "icon", "aria-hidden": "true" }, STATUS_ICONS[status] || "•"),
    " ",
    status,
  );
}

/** A status icon alone, with the status as its accessible name. */
export function icon(status) {
  return h("span", { class: `status-icon status-${status}`, title: status, "aria-label": status, role: "img" },
    STATUS_ICONS[status] || "•");
}

/** Milliseconds since the epoch of an ISO 8601 time, or null. */
export function ms(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** Local wall-clock time (with the date when it is not today). */
export function clock(iso) {
  const t = ms(iso);
  if (t === null) return "—";
  const d = new Date(t);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** A duration in words: "850 ms", "12.3 s", "4 min 5 s", "2 h 10 min", "3 d 4 h". */
export function duration(millis) {
  if (millis === null || millis === undefined || Number.isNaN(millis)) return "—";
  const m = Math.max(0, millis);
  if (m < 1000) return `${Math.round(m)} ms`;
  const s = m / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

/** "5 s ago" for an ISO time; elements made by `ago()` are refreshed by `refreshAgo()`. */
export function agoText(iso, now = Date.now()) {
  const t = ms(iso);
  if (t === null) return "—";
  const d = now - t;
  return d < 1500 ? "just now" : `${duration(d).replace(/ \d+ (s|min|h)$/, "")} ago`;
}

export function ago(iso) {
  return h("time", { class: "ago", datetime: iso || "", title: iso ? clock(iso) : "" }, agoText(iso));
}

export function refreshAgo(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time.ago")) el.textContent = agoText(el.getAttribute("datetime"), now);
}

/** A number with at most one decimal. */
export function num(x) {
  return x === null || x === undefined ? "—" : String(Math.round(x * 10) / 10);
}

/** Pretty JSON for outputs; long texts are kept whole (the <pre> scrolls). */
export function json(value) {
  return JSON.stringify(value, null, 2);
}
