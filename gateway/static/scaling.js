// The scaling view of the admin page: vLLM's queue, model replicas, GPU nodes and the last scale event,
// from GET /api/admin/scaling (Prometheus, read by the gateway). Big enough to read from the back of a
// room in the presenter view.
import { byId, setText } from "./dom.js";

const NO_DATA = "no data";

/** "42 s ago", "3 min 5 s ago", "1 h 2 min ago". */
export function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function figure(value) {
  return value === null || value === undefined ? NO_DATA : String(value);
}

/** "spot 2 · on-demand 1", or "none" when Karpenter reports no GPU node. */
function nodes(byCapacityType) {
  const entries = Object.entries(byCapacityType || {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([type, count]) => `${type} ${count}`).join(" · ") : "none";
}

function event(last, historySeconds) {
  if (!last) return `none in the last ${Math.round(historySeconds / 60)} min`;
  return `${last.from} → ${last.to} replicas, ${ago(last.seconds_ago)}`;
}

/** Show `data` (the endpoint's body); returns the figures the Live list repeats. */
export function showScaling(data) {
  const status = byId("scaling-status");
  if (!data.reachable) {
    for (const id of ["scale-waiting", "scale-running", "scale-replicas", "scale-nodes", "scale-event"]) {
      setText(byId(id), NO_DATA);
    }
    setText(status, data.prometheus_url ? `Prometheus at ${data.prometheus_url} cannot be read: ${data.error}`
      : `No figures: ${data.error}.`);
    return { gateway: NO_DATA, vllm: NO_DATA };
  }
  const replicas = data.replicas;
  const vllm = `${figure(replicas.ready)} / ${figure(replicas.desired)}`;
  setText(byId("scale-waiting"), figure(data.queue.waiting));
  setText(byId("scale-running"), figure(data.queue.running));
  setText(byId("scale-replicas"), vllm);
  setText(byId("scale-nodes"), nodes(data.gpu_nodes));
  setText(byId("scale-event"), event(data.last_scale_event, data.history_seconds));
  setText(status, `From Prometheus, updated ${new Date().toLocaleTimeString()}.`);
  return { gateway: figure(replicas.gateway_ready), vllm };
}

/** The view is off (no GATEWAY_PROMETHEUS_URL) or failed: say so instead of figures. */
export function showScalingProblem(message) {
  for (const id of ["scale-waiting", "scale-running", "scale-replicas", "scale-nodes", "scale-event"]) {
    setText(byId(id), NO_DATA);
  }
  setText(byId("scaling-status"), message);
  return { gateway: NO_DATA, vllm: NO_DATA };
}

/** The presenter view: the scaling section alone, full screen, until toggled off or Escape. */
export function setUpPresenterView() {
  const button = byId("presenter");
  const section = byId("scaling");
  const set = (on) => {
    document.body.classList.toggle("presenter", on);
    button.setAttribute("aria-pressed", String(on));
    setText(button, on ? "Leave presenter view" : "Presenter view");
  };
  button.addEventListener("click", async () => {
    const on = !document.body.classList.contains("presenter");
    set(on);
    if (on && section.requestFullscreen && !document.fullscreenElement) {
      await section.requestFullscreen().catch((error) => {
        // The browser may refuse full screen (a policy, an iframe): the in-page presenter view stays.
        setText(byId("scaling-status"), `Full screen refused (${error.message}); presenter view in the page.`);
      });
    } else if (!on && document.fullscreenElement) {
      await document.exitFullscreen();
    }
  });
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement) set(false);
  });
}
