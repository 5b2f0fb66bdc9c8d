// The audience page: quiz (ask the model, watch the answer stream in) and survey (rating, company,
// feedback, then a ticket for the prize draw). The mode follows the server without a reload.
import { DONE, Problem, explain, newIdempotencyKey, problemFrom, requestJson, retryable, send, sseData } from "./api.js";
import { RetryPanel, byId, setFieldError, setText, show, store, stored } from "./dom.js";

const CONFIG_POLL_MS = 3000;
const DRAFT_QUESTION = "draft:question"; // sessionStorage: what was typed, kept across failures and reloads
const DRAFT_SURVEY = "draft:survey";
const PENDING_QUESTION = "pending:question"; // sessionStorage: {key, payload} of a submission not yet stored
const PENDING_SURVEY = "pending:survey";
const TICKET = "survey:ticket"; // localStorage: {ticket, session_id} of the stored survey answer

const TITLES = { quiz: "Ask the model", survey: "Your feedback" };
// Errors that arrive inside a started stream carry no HTTP status; these are the statuses they stand for.
const STREAM_ERROR_STATUS = { upstream_timeout: 504, storage_unavailable: 503, upstream_overloaded: 503 };

const page = {
  mode: null,
  session: null,
  asking: false,
  sending: false,
};

const el = {
  title: byId("title"),
  connection: byId("connection"),
  loading: byId("loading"),
  quiz: byId("quiz"),
  survey: byId("survey"),
  questionForm: byId("question-form"),
  question: byId("question"),
  questionError: byId("question-error"),
  ask: byId("ask"),
  exchange: byId("exchange"),
  asked: byId("asked"),
  answer: byId("answer"),
  answerStatus: byId("answer-status"),
  surveyForm: byId("survey-form"),
  ratingGroup: byId("rating-group"),
  ratingError: byId("rating-error"),
  company: byId("company"),
  companyError: byId("company-error"),
  feedback: byId("feedback"),
  feedbackError: byId("feedback-error"),
  surveyFormError: byId("survey-form-error"),
  sendSurvey: byId("send-survey"),
  surveyDone: byId("survey-done"),
  ticket: byId("ticket"),
  checkWinner: byId("check-winner"),
  winnerResult: byId("winner-result"),
};
const questionRetry = new RetryPanel(byId("question-problem"));
const surveyRetry = new RetryPanel(byId("survey-problem"));

// ---- mode and session, polled from the server ----

async function pollConfig() {
  try {
    applyConfig(await requestJson("/api/config"));
    setText(el.connection, "Live");
    el.connection.classList.remove("offline");
  } catch (problem) {
    setText(el.connection, "Reconnecting…");
    el.connection.classList.add("offline");
    if (!(problem instanceof Problem)) throw problem;
  } finally {
    setTimeout(pollConfig, CONFIG_POLL_MS);
  }
}

function applyConfig(config) {
  const limits = config.limits || {};
  if (limits.question_max_chars) el.question.maxLength = limits.question_max_chars;
  if (limits.company_max_chars) el.company.maxLength = limits.company_max_chars;
  if (limits.feedback_max_chars) el.feedback.maxLength = limits.feedback_max_chars;
  page.session = config.session_id ?? config.session ?? null;
  const mode = config.mode === "survey" ? "survey" : "quiz";
  if (mode !== page.mode) {
    page.mode = mode;
    document.body.dataset.mode = mode;
    setText(el.title, TITLES[mode]);
    document.title = TITLES[mode];
  }
  show(el.loading, false);
  show(el.quiz, mode === "quiz");
  show(el.survey, mode === "survey");
  showSurveyState();
}

// ---- quiz ----

function submitQuestion() {
  const question = el.question.value.trim();
  setFieldError(el.question, el.questionError, "");
  if (!question) {
    setFieldError(el.question, el.questionError, "Type a question first.");
    el.question.focus();
    return;
  }
  if (tooLong(el.question, question)) {
    setFieldError(el.question, el.questionError, `Keep it under ${el.question.maxLength} characters.`);
    el.question.focus();
    return;
  }
  ask(question);
}

/** The Idempotency-Key for `payload`: the pending one while the same payload is retried, else a new one. */
function keyFor(pendingName, payload) {
  const pending = stored(sessionStorage, pendingName);
  if (pending && JSON.stringify(pending.payload) === JSON.stringify(payload)) return pending.key;
  const key = newIdempotencyKey();
  store(sessionStorage, pendingName, { key, payload });
  return key;
}

function streamProblem(error) {
  const code = typeof error.code === "string" ? error.code : null;
  return new Problem({ status: STREAM_ERROR_STATUS[code] ?? 502, code, message: error.message || "" });
}

async function ask(question) {
  if (page.asking) return;
  page.asking = true;
  el.ask.disabled = true;
  setText(el.ask, "Answering…");
  questionRetry.close(false);
  const key = keyFor(PENDING_QUESTION, { question });
  show(el.exchange, true);
  setText(el.asked, question);
  el.answer.replaceChildren();
  setText(el.answerStatus, "Waiting for the model…");
  let finished = false;
  try {
    const response = await send("/api/questions", {
      method: "POST",
      body: { question, stream: true },
      headers: { "Idempotency-Key": key, Accept: "text/event-stream" },
    });
    if (!response.ok) throw await problemFrom(response);
    setText(el.answerStatus, "Answering…");
    let queued = false;
    for await (const data of sseData(response)) {
      if (data === DONE) {
        finished = true;
      } else if (data.type === "queued") {
        // No model server is ready yet (a cold start): the gateway holds the question until one is.
        queued = true;
        setText(el.answerStatus, data.message || "The model is starting; your question is queued.");
      } else if (data.type === "delta") {
        if (queued) {
          queued = false;
          setText(el.answerStatus, "Answering…");
        }
        appendAnswer(data.text);
      } else if (data.type === "done") {
        finished = true;
      } else if (data.error) {
        throw streamProblem(data.error);
      } else if (Array.isArray(data.choices)) {
        appendAnswer(data.choices[0]?.delta?.content);
      }
    }
    if (!finished) throw new Problem({ status: 502, code: "incomplete", message: "The answer was cut off." });
    setText(el.answerStatus, "Answered.");
    el.question.value = "";
    store(sessionStorage, DRAFT_QUESTION, null);
    store(sessionStorage, PENDING_QUESTION, null);
    questionRetry.close(true);
  } catch (problem) {
    if (!(problem instanceof Problem)) {
      problem = new Problem({ status: 0, code: "network", message: String(problem.message || problem) });
    }
    // Keep a partial answer on screen; an exchange with no answer at all is just noise.
    setText(el.answerStatus, "The answer stopped early.");
    show(el.exchange, Boolean(el.answer.textContent));
    showQuestionProblem(problem);
  } finally {
    page.asking = false;
    el.ask.disabled = false;
    setText(el.ask, "Ask");
  }
}

/** The model's text is appended as a text node: it is never parsed as HTML. */
function appendAnswer(text) {
  if (typeof text === "string" && text) el.answer.append(document.createTextNode(text));
}

function showQuestionProblem(problem) {
  if (problem.status === 422 && problem.fields.question) {
    setFieldError(el.question, el.questionError, `Your question ${problem.fields.question}.`);
  }
  const action = retryable(problem) ? submitQuestion : null;
  questionRetry.open(explain(problem, { action: "ask" }), action, problem.retryAfter);
}

el.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    el.questionForm.requestSubmit();
  }
});
el.question.addEventListener("input", () => store(sessionStorage, DRAFT_QUESTION, el.question.value));
el.questionForm.addEventListener("submit", (event) => {
  event.preventDefault();
  submitQuestion();
});

// ---- survey ----

function surveyValues() {
  const checked = el.surveyForm.querySelector("input[name=rating]:checked");
  return {
    rating: checked ? Number(checked.value) : null,
    company: el.company.value,
    feedback: el.feedback.value,
  };
}

function restoreSurveyDraft() {
  const draft = stored(sessionStorage, DRAFT_SURVEY);
  if (!draft) return;
  const radio = draft.rating ? el.surveyForm.querySelector(`input[name=rating][value="${Number(draft.rating)}"]`) : null;
  if (radio) radio.checked = true;
  if (typeof draft.company === "string") el.company.value = draft.company;
  if (typeof draft.feedback === "string") el.feedback.value = draft.feedback;
}

const FIELD_INPUTS = {
  rating: () => [el.ratingGroup, el.ratingError],
  company: () => [el.company, el.companyError],
  feedback: () => [el.feedback, el.feedbackError],
};

function clearSurveyErrors() {
  for (const field of Object.values(FIELD_INPUTS)) setFieldError(...field(), "");
  setText(el.surveyFormError, "");
  show(el.surveyFormError, false);
}

/** Whether `text` is over the field's maxlength (the server's limit, from /api/config); -1 is no limit. */
function tooLong(field, text) {
  return field.maxLength >= 0 && text.trim().length > field.maxLength;
}

function validateSurvey(values) {
  const errors = {};
  if (!values.rating) errors.rating = "Choose a rating from 1 to 5.";
  if (tooLong(el.company, values.company)) {
    errors.company = `Keep the company name under ${el.company.maxLength} characters.`;
  }
  if (tooLong(el.feedback, values.feedback)) {
    errors.feedback = `Keep your feedback under ${el.feedback.maxLength} characters.`;
  }
  return errors;
}

function showSurveyErrors(errors) {
  let first = null;
  for (const [name, message] of Object.entries(errors)) {
    const field = FIELD_INPUTS[name];
    if (field) {
      setFieldError(...field(), message);
      first = first || name;
    } else {
      setText(el.surveyFormError, message);
      show(el.surveyFormError, true);
    }
  }
  if (first === "rating") el.surveyForm.querySelector("input[name=rating]").focus();
  else if (first) FIELD_INPUTS[first]()[0].focus();
}

/** Server messages read "must be at most 200 characters"; say which field they are about. */
function serverFieldMessages(fields) {
  const labels = { rating: "Rating", company: "Company", feedback: "Feedback" };
  const messages = {};
  for (const [name, message] of Object.entries(fields)) {
    messages[name] = labels[name] ? `${labels[name]}: ${message}` : `${name}: ${message}`;
  }
  return messages;
}

async function submitSurvey() {
  if (page.sending) return;
  clearSurveyErrors();
  const values = surveyValues();
  const errors = validateSurvey(values);
  if (Object.keys(errors).length) {
    showSurveyErrors(errors);
    return;
  }
  page.sending = true;
  el.sendSurvey.disabled = true;
  setText(el.sendSurvey, "Sending…");
  surveyRetry.close(false);
  const payload = { rating: values.rating, company: values.company.trim(), feedback: values.feedback.trim() };
  const key = keyFor(PENDING_SURVEY, payload);
  try {
    const record = await requestJson("/api/survey", {
      method: "POST",
      body: payload,
      headers: { "Idempotency-Key": key },
    });
    store(localStorage, TICKET, { ticket: record.ticket, session_id: record.session_id });
    store(sessionStorage, DRAFT_SURVEY, null);
    store(sessionStorage, PENDING_SURVEY, null);
    el.surveyForm.reset();
    surveyRetry.close(true);
    showSurveyState();
    el.surveyDone.focus();
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    if (problem.status === 422 && Object.keys(problem.fields).length) {
      showSurveyErrors(serverFieldMessages(problem.fields));
    }
    const action = retryable(problem) ? submitSurvey : null;
    if (problem.status !== 422) surveyRetry.open(explain(problem, { action: "save your answer" }), action, problem.retryAfter);
  } finally {
    page.sending = false;
    el.sendSurvey.disabled = false;
    setText(el.sendSurvey, "Send");
  }
}

/** The confirmation once this session has our answer, the form otherwise. */
function showSurveyState() {
  const saved = stored(localStorage, TICKET);
  const done = Boolean(saved && saved.ticket && saved.session_id === page.session);
  show(el.surveyForm, !done);
  show(el.surveyDone, done);
  if (done) setText(el.ticket, saved.ticket);
  else setText(el.winnerResult, "");
}

async function checkWinner() {
  const saved = stored(localStorage, TICKET);
  if (!saved) return;
  el.checkWinner.disabled = true;
  setText(el.winnerResult, "Checking…");
  try {
    const query = new URLSearchParams({ ticket: saved.ticket, session: saved.session_id });
    const result = await requestJson(`/api/winner?${query}`);
    if (result.winner) setText(el.winnerResult, `You won (prize ${result.rank})! Show this screen with ticket ${result.ticket}.`);
    else if (result.drawn) setText(el.winnerResult, "Not this time. Thank you for taking part!");
    else setText(el.winnerResult, "The draw has not happened yet. Check again after it.");
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    if (problem.code === "ticket_not_found") setText(el.winnerResult, "We could not find your ticket in this session.");
    else setText(el.winnerResult, explain(problem, { action: "check" }));
  } finally {
    el.checkWinner.disabled = false;
  }
}

el.surveyForm.addEventListener("input", () => store(sessionStorage, DRAFT_SURVEY, surveyValues()));
el.surveyForm.addEventListener("change", () => store(sessionStorage, DRAFT_SURVEY, surveyValues()));
el.surveyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  submitSurvey();
});
el.checkWinner.addEventListener("click", checkWinner);

// ---- start ----

const questionDraft = stored(sessionStorage, DRAFT_QUESTION);
if (typeof questionDraft === "string") el.question.value = questionDraft;
restoreSurveyDraft();
document.addEventListener("visibilitychange", () => {
  // Back on the page: catch up at once; a failure here is shown by the next poll.
  if (document.visibilityState === "visible") requestJson("/api/config").then(applyConfig, () => undefined);
});
pollConfig();
