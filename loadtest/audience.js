// k6 load test reproducing the audience: phones on the quiz and survey pages,
// plus a few direct OpenAI-style API clients.
//
//   k6 run -e BASE_URL=https://llm-dev.example.com loadtest/audience.js
//
// The scaling simulator reads `stages` below; keep it a plain literal.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const MODEL = __ENV.MODEL || 'mistral-7b-instruct';
const MAX_TOKENS = parseInt(__ENV.MAX_TOKENS || '128', 10);
// Share of iterations per kind of request; the rest are survey submissions.
const QUESTION_SHARE = 0.6;
const CHAT_SHARE = 0.1;

export const options = {
  stages: [
    {duration: '30s', target: 20},
    {duration: '1m', target: 60},
    {duration: '1m', target: 150},
    {duration: '3m', target: 150},
    {duration: '1m', target: 30},
    {duration: '30s', target: 0},
  ],
  thresholds: {
    http_req_failed: ['rate<0.02'],
    // Answers wait for the model (queue + generation of up to MAX_TOKENS).
    http_req_duration: ['p(95)<20000'],
    'http_req_duration{kind:question}': ['p(95)<20000'],
    'http_req_duration{kind:chat}': ['p(95)<20000'],
    // A survey write is one S3 put: it must stay fast under any model load.
    'http_req_duration{kind:survey}': ['p(95)<1000'],
    checks: ['rate>0.98'],
  },
};

const QUESTIONS = [
  'What is Kubernetes in one sentence?',
  'Why do GPUs make language models faster?',
  'What does a spot instance cost compared to on-demand?',
  'Explain autoscaling to a five-year-old.',
  'What is the difference between a pod and a node?',
  'How does KEDA decide how many replicas to run?',
  'What is quantization in machine learning?',
  'Give me a haiku about cold starts.',
  'What is a container image?',
  'Why would a queue be a better scaling signal than CPU?',
];
const COMPANIES = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark Industries', ''];
const FEEDBACK = [
  'Great talk!',
  'Loved the live demo.',
  'Would like more detail on Karpenter.',
  'The scaling graph was impressive.',
  '',
];

const sent = new Counter('audience_requests');

function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

function isSuccess(res) {
  return res.status >= 200 && res.status < 300;
}

function postJson(path, body, kind, timeout) {
  const res = http.post(`${BASE_URL}${path}`, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json' },
    tags: { kind },
    timeout,
  });
  sent.add(1, { kind });
  return res;
}

export function askQuestion() {
  const res = postJson('/api/questions', { question: pick(QUESTIONS) }, 'question', '60s');
  check(res, { 'question accepted': isSuccess });
}

export function submitSurvey() {
  const body = {
    rating: 1 + Math.floor(Math.random() * 5),
    company: pick(COMPANIES),
    feedback: pick(FEEDBACK),
  };
  const res = postJson('/api/survey', body, 'survey', '10s');
  check(res, { 'survey stored': isSuccess });
}

export function chatCompletion() {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: pick(QUESTIONS) }],
    max_tokens: MAX_TOKENS,
  };
  const res = postJson('/v1/chat/completions', body, 'chat', '60s');
  check(res, {
    'completion returned': isSuccess,
    'completion has a choice': (r) => isSuccess(r) && (r.json('choices') || []).length > 0,
  });
}

export default function () {
  const roll = Math.random();
  if (roll < QUESTION_SHARE) {
    askQuestion();
  } else if (roll < QUESTION_SHARE + CHAT_SHARE) {
    chatCompletion();
  } else {
    submitSurvey();
  }
  // People read the answer or fill in the form before the next tap.
  sleep(2 + Math.random() * 6);
}
