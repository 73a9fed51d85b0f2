// The gateway's REST API and the WebSocket address of an execution. Paths are relative to the page, so the
// dashboard also works behind a proxy that serves the gateway under a path prefix.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export const SIGN_IN =
  "not signed in: open the dashboard link that `planexe-ax up` prints (it carries a token), " +
  "or ask for one (`planexe-ax auth token`) and open this page as /?token=<token>";

/** Call the API; resolve to the JSON body, or reject with an ApiError carrying the server's `detail`. */
export async function api(path, { method = "GET", body } = {}) {
  let response;
  try {
    response = await fetch(path.replace(/^\//, ""), {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `the gateway is unreachable (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) {
    throw new ApiError(401, SIGN_IN);
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, detail);
  }
  return data;
}

/** ws:// or wss:// address of a path, relative to the page. */
export function wsUrl(path) {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

export const BY = "dashboard";
