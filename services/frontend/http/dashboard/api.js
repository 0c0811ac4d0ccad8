// The JSON API: every call answers its JSON or throws an ApiError with the
// API's {code, message} (a network failure is code "UNAVAILABLE").

export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** GET (or another method, with a JSON body) a path of the API. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("UNAVAILABLE", `the server cannot be reached (${error.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = (data && data.code) || `HTTP_${response.status}`;
    const message = (data && data.message) || response.statusText || "request failed";
    throw new ApiError(code, message, response.status);
  }
  return data;
}

/** A query string from an object: arrays repeat the name, empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") search.append(name, String(one));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A path segment, escaped. */
export const seg = (value) => encodeURIComponent(value);
