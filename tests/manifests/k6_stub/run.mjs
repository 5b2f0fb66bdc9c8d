// node --import ./register.mjs run.mjs SCRIPT ITERATIONS
// Prints {options, requests, checks} as JSON. __ENV comes from K6_ENV (JSON).
import { pathToFileURL } from 'node:url';
import { recorded } from './recorder.mjs';

const [script, iterations] = process.argv.slice(2);
globalThis.__ENV = JSON.parse(process.env.K6_ENV || '{}');
const module = await import(pathToFileURL(script).href);
for (let i = 0; i < Number(iterations); i += 1) {
  module.default();
}
process.stdout.write(JSON.stringify({ options: module.options, ...recorded }));
