// The page a mailed link opens: /answer#item=<id>&token=<one-time token>. The token stays in the fragment
// (never sent in a URL, never logged); it reads and answers that one item, once.

const params = new URLSearchParams(location.hash.replace(/^#/, ""));
const itemId = params.get("item") || "";
const token = params.get("token") || "";
const $ = (id) => document.getElementById(id);

async function call(method, body) {
  const response = await fetch(`api/inbox/${encodeURIComponent(itemId)}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((data && typeof data.detail === "string" && data.detail) || `${response.status}`);
  }
  return data;
}

function show(item) {
  $("item-title").textContent = item.title || item.action || item.kind;
  $("item-what").textContent = `${item.kind.replace("_", " ")} · execution ${item.execution_id} · task ${item.task_id || "-"}`;
  $("item-reason").textContent = item.reason;
  const actions = $("item-actions");
  actions.replaceChildren();
  if (item.status !== "open") {
    $("item-status").textContent = `This item is closed (${item.resolution} by ${item.resolved_by}).`;
    return;
  }
  for (const action of item.actions) {
    const button = document.createElement("button");
    button.className = "btn";
    button.type = "button";
    button.dataset.action = action;
    button.textContent = action;
    button.addEventListener("click", () => answer(action));
    actions.append(button);
  }
}

async function answer(action) {
  for (const b of $("item-actions").querySelectorAll("button")) b.disabled = true;
  try {
    const closed = await call("POST", { action, comment: $("item-comment").value });
    show(closed);
    history.replaceState(null, "", location.pathname); // the link is spent: drop it from the address bar
  } catch (err) {
    $("item-status").textContent = `Not answered: ${err.message}`;
  }
}

call("GET").then(show, (err) => {
  $("item-status").textContent = `This link cannot be used: ${err.message}`;
});
