// order-approval in JavaScript: the same workflow, and the same output, as the Rust plugin.
//
// FlowRunner's order processing: prepare an order, then pause at the mid-flow trigger
// `payment-confirmed` until the payment system calls
// `/t/{module}/payment-confirmed?execution=<run id>|any|all`, then complete the order.
// With `"trigger": "payment-verified"` it waits at a trigger that takes only callers with
// an API key holding the `payments` role, and only once `body.status` is `confirmed`.
//
// Input: {"order_id": string, "timeout_ms"?: ms, "trigger"?: name}.
// Output: {"order_id", "run_id", "status": "completed" | "payment-timed-out", "payment"?,
// "caller"?: API key name}.

import { Failure, log, namedTrigger, runId, waitTrigger, workflow } from '../../sdk/js/latch.js';

const wholeMs = (value) => value === undefined || (Number.isSafeInteger(value) && value >= 0);

export const { describe, run } = workflow({
  description: 'Prepares an order, then waits at the payment-confirmed trigger before completing it',
  namedTriggers: [
    namedTrigger('payment-confirmed'),
    namedTrigger('payment-verified', { bearer: ['payments'], condition: 'body.status == "confirmed"' }),
  ],
  main(input) {
    if (typeof input?.order_id !== 'string') throw new Failure('bad-input', 'order_id is required');
    const { trigger = 'payment-confirmed' } = input;
    const timeoutMs = input.timeout_ms ?? undefined;
    if (typeof trigger !== 'string' || !wholeMs(timeoutMs)) {
      throw new Failure('bad-input', 'trigger must be a name and timeout_ms whole milliseconds');
    }
    log(`order ${input.order_id} prepared; waiting for ${trigger}`);
    const payment = waitTrigger(trigger, timeoutMs);
    if (payment === null) return { order_id: input.order_id, run_id: runId(), status: 'payment-timed-out' };
    return {
      order_id: input.order_id,
      run_id: runId(),
      status: 'completed',
      payment: payment.data,
      caller: payment.caller.type === 'api-key' ? payment.caller.name : null,
    };
  },
});
