// Write Latch workflows in JavaScript. A module exports `describe` and `run` made with
// `workflow({ description, triggers, namedTriggers, main })`; `main(input, request)` gets the run's JSON
// input (or the trigger request's data, and the request itself) and returns its output.
// Throw `new Failure(code, message)` to fail the run with a code. Build, from the
// repository root (imports resolve from there):
//   (cd sdk/js && npm ci)
//   sdk/js/node_modules/.bin/componentize-js plugins/<name>/app.js --wit wit -n workflow \
//     -d http fetch-event -o <name>.wasm

import { log as hostLog, runId as hostRunId, nowMs as hostNowMs, random as hostRandom, patched as hostPatched } from 'latch:workflow/context@0.1.0';
import { create, close } from 'latch:workflow/webhooks@0.1.0';
import { next, select as hostSelect, sleep as hostSleep, sleepUntil as hostSleepUntil } from 'latch:workflow/waits@0.1.0';
import { respond } from 'latch:workflow/responses@0.1.0';
import { recorded, recordAttempt } from 'latch:workflow/steps@0.1.0';
import { send } from 'latch:workflow/outbound@0.1.0';

export class Failure extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

// A failure of a step that a retry cannot mend: the step fails at once.
export class Fatal extends Failure {}

// Runs an engine call, turning the error it returns into a Failure. Anything else (a
// wrong argument type, a bug) is thrown as it is, so a step does not retry it.
function engine(call) {
  try {
    return call();
  } catch (e) {
    if (!e || !e.payload) throw e;
    throw new Failure(e.payload.code, e.payload.message);
  }
}

// Workflows are synchronous: every wait blocks in the engine, not in a promise.
function synchronous(value, what) {
  if (value && typeof value.then === 'function') {
    throw new TypeError(`${what} returned a promise: workflows and steps must not be async`);
  }
  return value ?? null;
}

// JSON with object keys sorted, as the engine stores it: a step's live output is read
// back from the same text a replay gets, so iteration order is the same both times.
function canonicalJson(value) {
  return JSON.stringify(value, (_, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
      : v);
}

// JSON text as values; like anywhere in JavaScript, integers beyond 2^53 lose precision
// (pass such ids as strings).
function parse(text) {
  if (!text || !text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class Request {
  constructor(wit) {
    this.id = wit.id;
    this.webhook = wit.webhook;
    this.method = wit.method.toUpperCase();
    this.headers = wit.headers;
    this.query = wit.query;
    this.data = parse(wit.data);
    this.receivedAtMs = Number(wit.receivedAtMs);
    this.caller = caller(wit.caller);
  }

  // The first value of a header, by case-insensitive name, or null.
  header(name) {
    const found = this.headers.find(([key]) => key.toLowerCase() === name.toLowerCase());
    return found ? found[1] : null;
  }

  // Answers the caller of a webhook or trigger in manual response mode, with a JSON body.
  respond(status, body = null, headers = []) {
    engine(() => respond(this.id, jsonResponse(status, body, headers)));
  }
}

// Who made a call, as the engine verified it: `{ type: 'anonymous' | 'url-key' |
// 'api-key' | 'signature' }`, with `name` and `roles` for an API key and `scheme` for a
// signature.
function caller(wit) {
  if (wit.tag === 'api-key') return { type: 'api-key', name: wit.val.name, roles: wit.val.roles };
  if (wit.tag === 'signature') return { type: 'signature', scheme: wit.val };
  return { type: wit.tag };
}

function auth(urlKey, bearer) {
  if (bearer !== undefined) return { tag: 'bearer', val: bearer };
  return urlKey ? { tag: 'url-key' } : { tag: 'none' };
}

function jsonResponse(status, body, headers = []) {
  const text = body === null ? '' : JSON.stringify(body);
  return { status, headers: text ? [...headers, ['content-type', 'application/json']] : headers, body: text };
}

const witMethods = (names) => names.map((name) => name.toLowerCase());

function answerMode(manualMs, answer) {
  if (manualMs !== undefined) return { tag: 'manual', val: manualMs };
  return { tag: 'automatic', val: answer ?? jsonResponse(202, { accepted: true }) };
}

export class Webhook {
  // A single-use POST URL answered `202 {"accepted":true}`. A GET's query is its data;
  // `many` takes calls until closed; `manualMs` holds callers until the run responds
  // (504 after that many milliseconds).
  constructor({ token, methods = ['POST'], many = false, manualMs, urlKey = false, expiresInMs } = {}) {
    const hook = engine(() => create({
      token,
      methods: witMethods(methods),
      singleUse: !many,
      auth: auth(urlKey),
      onAuthFailure: 'error',
      response: answerMode(manualMs),
      expiresInMs: expiresInMs === undefined ? undefined : BigInt(expiresInMs),
      schema: undefined,
      condition: undefined,
    }));
    this.id = hook.id;
    this.token = hook.token;
    this.url = hook.url;
  }

  // The next call, or null when `timeoutMs` passed first. Throws Failure('closed').
  next(timeoutMs) {
    const result = next(this.id, timeoutMs === undefined ? undefined : BigInt(timeoutMs));
    if (result.tag === 'request') return new Request(result.val);
    if (result.tag === 'closed') throw new Failure('closed', `webhook ${this.id} is closed`);
    return null;
  }

  close() {
    close(this.id);
  }
}

// For `select`: a durable timer this many milliseconds from now.
export const timer = (ms) => ({ tag: 'timer', val: BigInt(ms) });
// For `select`: a durable timer at this moment (milliseconds since the Unix epoch).
export const deadline = (unixMs) => ({ tag: 'deadline', val: BigInt(unixMs) });
// For `select`: the next call to the module's named trigger for this run
// (`/t/{module}/{name}?execution=<run id>|any|all`).
export const triggerCall = (name) => ({ tag: 'trigger', val: name });

// Waits for the first of several webhooks, trigger calls, timers and deadlines. Returns
// `{ index, request, timedOut, closed }`: `request` is the call that arrived, or null. A
// call on a webhook that did not win is kept for a later wait: nothing is lost.
export function select(...waitables) {
  const chosen = waitables.map((w) => (w instanceof Webhook ? { tag: 'webhook', val: w.id } : w));
  const { index, outcome } = hostSelect(chosen);
  return {
    index,
    request: outcome.tag === 'request' ? new Request(outcome.val) : null,
    timedOut: outcome.tag === 'timed-out',
    closed: outcome.tag === 'closed',
  };
}

// Waits at the module's named trigger; null when `timeoutMs` passed first.
export function waitTrigger(name, timeoutMs) {
  return select(triggerCall(name), ...(timeoutMs === undefined ? [] : [timer(timeoutMs)])).request;
}

// Runs a named unit of work at most once per attempt, however often the run is replayed:
// each attempt's JSON output or Failure is recorded and read back on replay. A Failure is
// retried after a durable backoff (doubling from `backoffMs`) until `attempts` ran; a
// Fatal is not retried. `work` gets the attempt number, from 1, and must hand what it
// learns to the rest of the workflow only through its return value.
export function step(name, work, { attempts = 3, backoffMs = 1000, maxBackoffMs = 60000 } = {}) {
  for (let attempt = 1; ; attempt++) {
    let ended = recorded(name, attempt);
    if (ended === undefined) {
      ended = runAttempt(work, attempt);
      recordAttempt(name, attempt, ended);
    }
    if (ended.outcome.tag === 'ok') return JSON.parse(ended.outcome.val);
    if (ended.fatal || attempt >= attempts) throw new Failure(ended.outcome.val.code, ended.outcome.val.message);
    hostSleep(BigInt(Math.min(backoffMs * 2 ** (attempt - 1), maxBackoffMs)));
  }
}

function runAttempt(work, attempt) {
  try {
    const output = synchronous(work(attempt), `step body of attempt ${attempt}`);
    return { outcome: { tag: 'ok', val: canonicalJson(output) }, fatal: false };
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    return { outcome: { tag: 'err', val: { code: e.code, message: e.detail } }, fatal: e instanceof Fatal };
  }
}

// Sends an HTTP request through the engine, which records it: a replay gets the answer
// back without calling again. The host must be allowed (`--allow-http`). Throws Failure
// with `host-not-allowed`, `bad-url`, `timeout`, `unreachable` or `too-large`.
export function httpRequest(method, url, { json, body = '', headers = [], timeoutMs } = {}) {
  const all = json === undefined ? headers : [...headers, ['content-type', 'application/json']];
  const text = json === undefined ? body : JSON.stringify(json);
  const request = { method: witMethods([method])[0], url, headers: all, body: text, timeoutMs };
  const response = engine(() => send(request));
  return {
    status: response.status,
    headers: response.headers,
    body: response.body,
    ok: response.status >= 200 && response.status < 300,
    json() {
      try {
        return JSON.parse(response.body);
      } catch (e) {
        throw new Failure('bad-response', String(e));
      }
    },
  };
}

// A start trigger: a call to `/t/{module}/{suffix}` starts a run with that request.
// `expects` is a JSON Schema over `{method, headers, query, body}`; `manualMs` lets the
// run answer (`request.respond`); otherwise the caller gets `answer`, `[status, body]`
// with `{{run_id}}` filled in, by default 202. `urlKey` requires an API key in `?key=`.
export function trigger(name, suffix, { methods = ['POST'], expects, manualMs, answer, urlKey = false } = {}) {
  return {
    name,
    suffix,
    methods: witMethods(methods),
    auth: auth(urlKey),
    onAuthFailure: 'error',
    expects: expects === undefined ? undefined : JSON.stringify(expects),
    response: answerMode(manualMs, answer && jsonResponse(answer[0], answer[1])),
  };
}

export const log = (message, level = 'info') => hostLog(level, message);
export const runId = () => hostRunId();
export const nowMs = () => Number(hostNowMs());
// 64 random bits as a BigInt, recorded: the same on replay. Use this, not Math.random.
export const random = () => hostRandom();
// Whether this run takes the path of the change named `id` here: true when it gets here
// live (recorded) or replays a log that recorded it, false when it replays a log recorded
// before the change. Wrap calls a new version adds in `if (patched('...'))` so that old
// runs' logs still replay on it (and they can be upgraded to it).
export const patched = (id) => hostPatched(id);
// Sleeps durably: the run holds no instance meanwhile, and a restart loses nothing.
export const sleep = (ms) => hostSleep(BigInt(ms));
// Sleeps durably until this moment, in milliseconds since the Unix epoch.
export const sleepUntil = (unixMs) => hostSleepUntil(BigInt(unixMs));

// How calls to a named mid-flow trigger (`/t/{module}/{name}?execution=...`, waited on
// with `waitTrigger`) are checked: `bearer` lists the roles an API key must hold, `urlKey`
// takes an API key in `?key=`, and `condition` is a CEL expression over method, headers,
// query and body (when false the caller gets `{"activated":false}`). A named trigger the
// module does not declare takes no caller (and a run cannot wait there); one declared with
// no auth is open to any caller.
export function namedTrigger(name, { bearer, urlKey = false, condition } = {}) {
  return { name, auth: auth(urlKey, bearer), onAuthFailure: 'error', condition };
}

// The module's exports: `export const { describe, run } = workflow({...})`.
export function workflow({ description = '', triggers = [], namedTriggers = [], main }) {
  return {
    describe: () => ({ description, triggers, namedTriggers }),
    run(start) {
      const request = start.tag === 'api' ? null : new Request(start.val);
      const input = request === null ? parse(start.val) : request.data;
      try {
        return JSON.stringify(synchronous(main(input, request), 'main'));
      } catch (e) {
        if (e instanceof Failure) throw { code: e.code, message: e.detail };
        // Anything else is a bug in the workflow. Said on stderr, which the run's failure
        // shows; thrown on, it fails the run as a trap.
        console.error(e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e));
        throw e;
      }
    },
  };
}
