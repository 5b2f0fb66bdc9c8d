// Page helpers shared by the audience and admin pages. Text only ever goes in through textContent.

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

export function show(element, visible) {
  element.hidden = !visible;
}

export function setText(element, text) {
  element.textContent = text;
}

/** Show `message` under a field (or hide it when empty) and mark the field invalid for screen readers. */
export function setFieldError(field, errorElement, message) {
  setText(errorElement, message || "");
  show(errorElement, Boolean(message));
  if (message) field.setAttribute("aria-invalid", "true");
  else field.removeAttribute("aria-invalid");
}

/** JSON in sessionStorage (drafts, the admin token) or localStorage (the survey ticket); never throws. */
export function stored(storage, key) {
  try {
    const raw = storage.getItem(key);
    return raw === null ? null : JSON.parse(raw);
  } catch {
    return null;
  }
}

export function store(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch {
    // Private browsing or a full quota: the page still works, only without persistence.
  }
}

const MAX_AUTOMATIC_RETRIES = 3;

/**
 * A failure message with a Retry button. With a Retry-After the button counts down, then retries by
 * itself (up to MAX_AUTOMATIC_RETRIES times in a row); without one the button is ready at once.
 */
export class RetryPanel {
  constructor(panel) {
    this.panel = panel;
    this.message = panel.querySelector(".problem-message");
    this.button = panel.querySelector(".retry");
    this.timer = null;
    this.automatic = 0;
    this.action = null;
    this.button.addEventListener("click", () => this.retry(false));
  }

  /** Show `text`; `action` (or null when retrying cannot help) runs on retry. */
  open(text, action, retryAfter) {
    this.stopTimer();
    this.action = action;
    setText(this.message, text);
    show(this.panel, true);
    show(this.button, Boolean(action));
    if (!action) return;
    if (retryAfter && retryAfter > 0) this.countDown(retryAfter);
    else this.ready();
  }

  countDown(seconds) {
    let left = Math.ceil(seconds);
    this.button.disabled = true;
    const tick = () => {
      if (left <= 0) {
        this.stopTimer();
        this.ready();
        if (this.automatic < MAX_AUTOMATIC_RETRIES) this.retry(true);
        return;
      }
      setText(this.button, `Retry in ${left} s`);
      left -= 1;
    };
    tick();
    this.timer = setInterval(tick, 1000);
  }

  ready() {
    this.button.disabled = false;
    setText(this.button, "Retry");
  }

  retry(automatic) {
    if (!this.action || this.button.disabled) return;
    this.automatic = automatic ? this.automatic + 1 : 0;
    const action = this.action;
    this.close(false);
    action();
  }

  /** Hide the panel; `succeeded` resets the automatic retry count. */
  close(succeeded = true) {
    this.stopTimer();
    this.action = null;
    if (succeeded) this.automatic = 0;
    show(this.panel, false);
  }

  stopTimer() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
