// The admin page: unlock with the admin token (kept in this tab only), show the join QR code, switch
// modes, start sessions, draw winners, and watch live figures.
import { Problem, explain, requestJson, send, problemFrom } from "./api.js";
import { byId, setFieldError, setText, show, store, stored } from "./dom.js";
import { setUpPresenterView, showScaling, showScalingProblem } from "./scaling.js";

const LIVE_POLL_MS = 2000;
const TOKEN = "admin:token"; // sessionStorage: gone when the tab closes

const el = {
  state: byId("admin-state"),
  login: byId("login"),
  loginForm: byId("login-form"),
  token: byId("token"),
  tokenError: byId("token-error"),
  console: byId("console"),
  qr: byId("qr"),
  publicUrl: byId("public-url"),
  currentMode: byId("current-mode"),
  currentSession: byId("current-session"),
  modeButtons: [byId("mode-quiz"), byId("mode-survey")],
  newSession: byId("new-session"),
  modeResult: byId("mode-result"),
  drawForm: byId("draw-form"),
  drawCount: byId("draw-count"),
  drawCountError: byId("draw-count-error"),
  drawSeed: byId("draw-seed"),
  drawResult: byId("draw-result"),
  drawSummary: byId("draw-summary"),
  winners: byId("winners"),
  liveError: byId("live-error"),
  lock: byId("lock"),
};

let token = stored(sessionStorage, TOKEN);
let liveTimer = null;

function authorization() {
  return { Authorization: `Bearer ${token}` };
}

/** An admin request; a 401 locks the page again. */
async function admin(path, options = {}) {
  try {
    return await requestJson(path, { ...options, headers: { ...authorization(), ...(options.headers || {}) } });
  } catch (problem) {
    if (problem instanceof Problem && problem.status === 401) {
      lock(el.console.hidden ? "That token was not accepted." : "The token is no longer accepted. Unlock again.");
    }
    throw problem;
  }
}

function lock(message = "") {
  token = null;
  store(sessionStorage, TOKEN, null);
  if (liveTimer !== null) clearTimeout(liveTimer);
  liveTimer = null;
  el.qr.removeAttribute("src");
  show(el.console, false);
  show(el.login, true);
  setText(el.state, "Locked");
  setFieldError(el.token, el.tokenError, message);
  el.token.focus();
}

async function unlock(candidate) {
  token = candidate;
  try {
    await admin("/api/admin/live");
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    if (problem.status === 401) return; // lock() has said so
    const message = problem.code === "admin_disabled" ? problem.message : explain(problem, { action: "unlock" });
    lock(message);
    return;
  }
  store(sessionStorage, TOKEN, token);
  el.token.value = "";
  setFieldError(el.token, el.tokenError, "");
  show(el.login, false);
  show(el.console, true);
  setText(el.state, "Unlocked");
  await Promise.all([loadQr(), refresh()]);
}

/** The QR SVG comes from an authenticated endpoint, so it is fetched and shown as a data: image. */
async function loadQr() {
  const response = await send("/api/admin/qr.svg", { headers: { ...authorization(), Accept: "image/svg+xml" } });
  if (!response.ok) throw await problemFrom(response);
  const blob = await response.blob();
  el.qr.src = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function showFigure(id, value) {
  setText(byId(id), value === null || value === undefined ? "unknown" : String(value));
}

/** The scaling view's figures; a view that is off or failing says why instead of stopping the page. */
async function scaling() {
  try {
    return showScaling(await admin("/api/admin/scaling"));
  } catch (problem) {
    if (!(problem instanceof Problem) || problem.status === 401) throw problem;
    return showScalingProblem(problem.message || explain(problem, { action: "refresh" }));
  }
}

async function refresh() {
  if (liveTimer !== null) clearTimeout(liveTimer);
  try {
    const [live, config, stats, replicas] = await Promise.all([
      admin("/api/admin/live"),
      requestJson("/api/config"),
      requestJson("/api/stats"),
      scaling(),
    ]);
    setText(el.publicUrl, config.public_url);
    const session = config.session_id ?? config.session;
    setText(el.currentMode, config.mode);
    setText(el.currentSession, session);
    for (const button of el.modeButtons) button.setAttribute("aria-pressed", String(button.dataset.mode === config.mode));
    const gateway = live.gateway;
    const upstream = live.upstream;
    showFigure("fig-requests", gateway.requests_total);
    showFigure("fig-in-flight", `${gateway.in_flight} of ${gateway.max_in_flight}`);
    showFigure("fig-running", upstream.reachable ? upstream.running : null);
    showFigure("fig-waiting", upstream.reachable ? `${upstream.waiting} (shed above ${gateway.shed_queue_waiting})` : null);
    showFigure("fig-shed", Object.values(gateway.shed).reduce((sum, count) => sum + count, 0));
    showFigure("fig-held", `${live.hold.held} of ${live.hold.max_requests}`);
    showFigure("fig-replicas-gateway", replicas.gateway);
    showFigure("fig-replicas-vllm", replicas.vllm);
    const current = (stats.sessions || []).find((item) => item.session_id === session);
    showFigure("fig-questions", current ? current.questions : 0);
    showFigure("fig-surveys", current ? current.surveys : 0);
    showFigure("fig-rating", current && current.average_rating !== null ? current.average_rating.toFixed(2) : "–");
    setText(el.liveError, upstream.reachable ? "" : `vLLM metrics unreachable: ${upstream.error}`);
    show(el.liveError, !upstream.reachable);
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    if (!token) return;
    setText(el.liveError, explain(problem, { action: "refresh" }));
    show(el.liveError, true);
  }
  if (token) liveTimer = setTimeout(refresh, LIVE_POLL_MS);
}

async function action(button, run) {
  button.disabled = true;
  setText(el.modeResult, "…");
  try {
    setText(el.modeResult, await run());
    await refresh();
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    setText(el.modeResult, problem.message || explain(problem));
  } finally {
    button.disabled = false;
  }
}

for (const button of el.modeButtons) {
  button.addEventListener("click", () =>
    action(button, async () => {
      const state = await admin("/api/admin/mode", { method: "POST", body: { mode: button.dataset.mode } });
      return `Mode is now ${state.mode}.`;
    }),
  );
}

el.newSession.addEventListener("click", () =>
  action(el.newSession, async () => {
    const state = await admin("/api/admin/session", { method: "POST", body: {} });
    return `Session ${state.session_id} started (${state.previous_session_id} ended).`;
  }),
);

el.drawForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const count = Number(el.drawCount.value);
  if (!Number.isInteger(count) || count < 1 || count > 1000) {
    setFieldError(el.drawCount, el.drawCountError, "Enter a whole number from 1 to 1000.");
    el.drawCount.focus();
    return;
  }
  setFieldError(el.drawCount, el.drawCountError, "");
  const body = { count };
  if (el.drawSeed.value.trim()) body.seed = el.drawSeed.value.trim();
  const submit = el.drawForm.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const draw = await admin("/api/admin/draw", { method: "POST", body });
    setText(el.drawSummary, `${draw.winners.length} winner(s) from ${draw.eligible} ticket(s), seed ${draw.seed}:`);
    el.winners.replaceChildren(...draw.winners.map((ticket) => {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = ticket;
      item.append(code);
      return item;
    }));
    show(el.drawResult, true);
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    setText(el.drawSummary, problem.message || explain(problem));
    el.winners.replaceChildren();
    show(el.drawResult, true);
  } finally {
    submit.disabled = false;
  }
});

el.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const candidate = el.token.value.trim();
  if (!candidate) {
    setFieldError(el.token, el.tokenError, "Enter the admin token.");
    el.token.focus();
    return;
  }
  unlock(candidate);
});
el.lock.addEventListener("click", () => lock(""));
setUpPresenterView();

if (token) unlock(token);
else el.token.focus();
