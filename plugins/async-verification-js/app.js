// async-verification in JavaScript: the same workflow, and the same output, as the Rust
// plugin. Submit a document to a vendor over outbound HTTP, handing it a callback URL
// whose caller the run answers itself, then race the vendor's callback against a
// durable timer.
//
// Input: {"document_id": string, "vendor_url": string, "deadline_ms"?: number}.
// Output: {"document_id", "status": "verified" | "rejected" | "timed_out", "details"?}.

import { Failure, Fatal, Webhook, httpRequest, select, step, timer, workflow } from '../../sdk/js/latch.js';

// How long the vendor's callback is held for the run's answer.
const ANSWER_DEADLINE_MS = 10_000;

// Errors a retry cannot mend.
const FATAL_CODES = new Set(['host-not-allowed', 'bad-url', 'bad-request']);

function submit(input, callbackUrl) {
  let response;
  try {
    response = httpRequest('POST', input.vendor_url, {
      json: { document_id: input.document_id, callback_url: callbackUrl },
    });
  } catch (e) {
    if (e instanceof Failure && FATAL_CODES.has(e.code)) throw new Fatal(e.code, e.detail);
    throw e;
  }
  if (response.ok) return response.status;
  if (response.status >= 500 && response.status < 600) throw new Failure('vendor-unavailable', response.body);
  throw new Fatal('vendor-refused', `${response.status}: ${response.body}`);
}

export const { describe, run } = workflow({
  description: 'Submits a document to a vendor and races its callback against a deadline',
  main(input) {
    if (typeof input?.document_id !== 'string' || typeof input?.vendor_url !== 'string') {
      throw new Failure('bad-input', 'document_id and vendor_url are required');
    }
    const deadlineMs = input.deadline_ms ?? 30_000;
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 0 || input.deadline_ms === null) {
      throw new Failure('bad-input', 'deadline_ms must be a whole number of milliseconds');
    }
    const callback = new Webhook({ manualMs: ANSWER_DEADLINE_MS });
    step('submit-to-vendor', () => submit(input, callback.url));

    const first = select(callback, timer(deadlineMs));
    if (first.timedOut) return { document_id: input.document_id, status: 'timed_out' };
    if (first.closed) throw new Failure('closed', 'the callback URL closed without a callback');
    first.request.respond(200, { ack: true });
    const data = first.request.data ?? {};
    return {
      document_id: input.document_id,
      status: data.approved === true ? 'verified' : 'rejected',
      details: data.details !== undefined ? data.details : data.reason ?? null,
    };
  },
});
