// The JSON API: every call answers its JSON or throws an ApiError with the
// API's {code, message} (a network failure is code "UNAVAILABLE").
//
// Every call carries the API key kept in this tab's sessionStorage (KEY_NAME)
// as `Authorization: Bearer <key>`, never in an address. With no key, or when
// the API answers 401 (UNAUTHENTICATED), the key dialog (dialog.js) asks for
// one and the call is sent again with it; calls waiting at once share one
// dialog. A 403 (PERMISSION_DENIED) is an ApiError like any other, shown where
// the page shows its errors.

import { keyDialog } from "./dialog.js";

export const KEY_NAME = "cairn.apiKey";

export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const keyListeners = new Set();

/** The API key of this tab's session ("" for none). */
export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) || "";
  } catch {
    return "";
  }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_NAME, key);
    else sessionStorage.removeItem(KEY_NAME);
  } catch {
    /* storage refused: the key lasts until the page is left */
  }
  keyListeners.forEach((listener) => listener(Boolean(key)));
}

/** Forgets the session's key (sign out). */
export function forgetKey() {
  storeKey("");
}

/** Calls listener(hasKey) whenever the key is stored or forgotten. */
export function onKeyChange(listener) {
  keyListeners.add(listener);
}

/** The Authorization header of `key` (none for ""). */
export function authorization(key) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let asking = null;

/**
 * Asks for a key (one dialog for every caller waiting at once), stores it and
 * answers it. Throws ApiError UNAUTHENTICATED when the dialog is cancelled.
 */
export function askForKey(refusal = "") {
  if (!asking) {
    asking = keyDialog(refusal).then((key) => {
      asking = null;
      if (!key) throw new ApiError("UNAUTHENTICATED", "no API key: the dashboard needs one to read the API (Enter key, at the top)", 401);
      storeKey(key);
      return key;
    });
  }
  return asking;
}

/** The key to send: the session's, else one asked for. */
export async function keyToSend() {
  return apiKey() || askForKey();
}

/**
 * After a 401 for the key `sent`, the key to try next: one another call has
 * stored meanwhile, else (the refused key forgotten) one asked for, showing
 * the API's `refusal`.
 */
export async function keyAfterRefusal(sent, refusal) {
  const current = apiKey();
  if (current && current !== sent) return current;
  if (current) storeKey("");
  return askForKey(refusal);
}

async function send(path, init) {
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

/** GET (or another method, with a JSON body) a path of the API. */
export async function api(path, { method = "GET", body, signal } = {}) {
  let key = await keyToSend();
  for (;;) {
    const init = { method, signal, headers: { Accept: "application/json", ...authorization(key) } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    try {
      return await send(path, init);
    } catch (error) {
      // A 401 changed nothing, so the call is sent again with the next key.
      if (error.status !== 401) throw error;
      key = await keyAfterRefusal(key, error.message);
    }
  }
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
