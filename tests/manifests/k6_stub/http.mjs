import { recorded } from './recorder.mjs';

// A 200 whose JSON looks like an OpenAI chat completion.
function response() {
  const body = { choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] };
  return { status: 200, json: (path) => (path ? body[path] : body) };
}

export default {
  post(url, body, params) {
    recorded.requests.push({ method: 'POST', url, body: JSON.parse(body), params });
    return response();
  },
  get(url, params) {
    recorded.requests.push({ method: 'GET', url, body: null, params });
    return response();
  },
};
