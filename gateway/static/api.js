// Talking to the gateway: JSON requests, its OpenAI-style error bodies, Retry-After, and SSE over fetch.

/** A failed request, with what the page needs to explain it and to retry it. */
export class Problem extends Error {
  constructor({ status = 0, code = null, message = "", fields = {}, retryAfter = null }) {
    super(message || `HTTP ${status}`);
    this.status = status; // 0: the request never got an answer (network)
    this.code = code;
    this.fields = fields; // field name -> message (422)
    this.retryAfter = retryAfter; // seconds, or null when the server gave none
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function retryAfterSeconds(value) {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const when = Date.parse(trimmed);
  if (Number.isNaN(when)) return null;
  return Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

/** The Problem for a non-2xx response, from its {"error": {...}} body when it has one. */
export async function problemFrom(response) {
  let error = {};
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error !== null) error = body.error;
  } catch {
    // A body that is not JSON (a proxy's error page): the status alone explains it.
  }
  return new Problem({
    status: response.status,
    code: typeof error.code === "string" ? error.code : null,
    message: typeof error.message === "string" ? error.message : "",
    fields: error.fields && typeof error.fields === "object" ? error.fields : {},
    retryAfter: retryAfterSeconds(response.headers.get("Retry-After")),
  });
}

/** fetch() that turns a network failure into a Problem with status 0. */
export async function send(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Problem({ status: 0, code: "network", message: String(error.message || error) });
  }
}

/** A JSON request: the parsed body of a 2xx answer, or a thrown Problem. */
export async function requestJson(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw await problemFrom(response);
  return response.json();
}

const EVENT_END = /\r?\n\r?\n/;

/** Yielded by sseData for the `data: [DONE]` that ends an OpenAI-style stream. */
export const DONE = Symbol("[DONE]");

/**
 * The `data:` payloads of an SSE response body, parsed as JSON, then DONE for `[DONE]`, until the body ends.
 * Browsers have no SSE client for POST requests (EventSource only GETs), hence this small reader.
 */
export async function* sseData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = EVENT_END.exec(buffer)) !== null) {
        const block = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") {
          yield DONE;
          return;
        }
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** A fresh key for one submission attempt (kept until that submission succeeds). */
export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** What to tell the audience about a Problem, in their words. */
export function explain(problem, { action = "send this" } = {}) {
  const { status, code } = problem;
  if (status === 0) return `The connection dropped before we could ${action}. Check your network and retry.`;
  if (status === 429 && code === "rate_limit_exceeded") {
    return "You are going a little fast. Please wait a moment before trying again.";
  }
  if (status === 429) return "The model is busy with everyone's questions right now. Please try again shortly.";
  if (code === "storage_unavailable") return "We could not save that just now; nothing was recorded. Please retry.";
  if (code === "upstream_unavailable") return "The model server is down or still starting. Please try again shortly.";
  if (status === 503) return "The model server is busy right now. Please try again shortly.";
  if (status === 502) return "The model server had a problem answering. Please retry.";
  if (status === 504) return "The model took too long to answer. Please retry.";
  if (status === 422 || status === 400) return problem.message || "Please check what you entered.";
  if (status === 413) return "That is too long to send.";
  return `Something went wrong (${status || "network"}). Please retry.`;
}

/** Whether retrying the same request may succeed (busy, down, network); 4xx other than 429 will not. */
export function retryable(problem) {
  return problem.status === 0 || problem.status === 429 || problem.status >= 500;
}
