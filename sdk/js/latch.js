// Write Latch workflows in JavaScript. A module exports `describe` and `run` made with
// `workflow({ description, main })`; `main(input)` gets the run's JSON input (or the
// trigger request's data) and returns its output. Throw `new Failure(code, message)` to
// fail the run with a code. Build, from the repository root (imports resolve from there):
//   (cd sdk/js && npm ci)
//   sdk/js/node_modules/.bin/componentize-js plugins/<name>/app.js --wit wit -n workflow \
//     -d http fetch-event -o <name>.wasm

import { log as hostLog, runId as hostRunId, nowMs as hostNowMs } from 'latch:workflow/context@0.1.0';
import { create, close } from 'latch:workflow/webhooks@0.1.0';
import { next, sleep as hostSleep } from 'latch:workflow/waits@0.1.0';
import { respond } from 'latch:workflow/responses@0.1.0';

export class Failure extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

// Runs an engine call, turning its error into a Failure.
function engine(call) {
  try {
    return call();
  } catch (e) {
    const error = e && e.payload ? e.payload : e;
    throw new Failure(error.code ?? 'engine', error.message ?? String(error));
  }
}

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
  }

  // Answers the caller of a webhook in manual response mode, with a JSON body.
  respond(status, body = null, headers = []) {
    const text = body === null ? '' : JSON.stringify(body);
    const all = text ? [...headers, ['content-type', 'application/json']] : headers;
    engine(() => respond(this.id, { status, headers: all, body: text }));
  }
}

export class Webhook {
  constructor({ token, many = false, manualMs, urlKey = false, expiresInMs } = {}) {
    const response = manualMs === undefined
      ? { tag: 'automatic', val: { status: 202, headers: [['content-type', 'application/json']], body: '{"accepted":true}' } }
      : { tag: 'manual', val: manualMs };
    const hook = engine(() => create({
      token,
      methods: ['post'],
      singleUse: !many,
      auth: urlKey ? { tag: 'url-key' } : { tag: 'none' },
      onAuthFailure: 'error',
      response,
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

export const log = (message, level = 'info') => hostLog(level, message);
export const runId = () => hostRunId();
export const nowMs = () => Number(hostNowMs());
export const sleep = (ms) => hostSleep(BigInt(ms));

// The module's exports: `export const { describe, run } = workflow({...})`.
export function workflow({ description = '', main }) {
  return {
    describe: () => ({ description, triggers: [], namedTriggers: [] }),
    run(start) {
      const input = start.tag === 'api' ? parse(start.val) : new Request(start.val).data;
      try {
        return JSON.stringify(main(input));
      } catch (e) {
        if (e instanceof Failure) throw { code: e.code, message: e.detail };
        throw e;
      }
    },
  };
}
