// order-payment in JavaScript: the same workflow, and the same output, as the Rust plugin.
//
// Input: {"order_id": string, "amount": number, "currency"?: string}.
// Output: {"order_id", "amount", "status": "paid" | "payment-failed", "payment": <callback data>}.

import { Failure, Webhook, log, workflow } from '../../sdk/js/latch.js';

export const { describe, run } = workflow({
  description: "Waits for a payment provider's callback confirming an order's payment",
  main(input) {
    if (!input || typeof input.order_id !== 'string') throw new Failure('bad-input', 'order_id is required');
    if (!input.order_id.trim()) throw new Failure('bad-input', 'order_id must not be empty');
    const { amount, currency = null } = input;
    if (typeof amount !== 'number') throw new Failure('bad-input', 'amount must be a number');
    if (currency !== null && typeof currency !== 'string') throw new Failure('bad-input', 'currency must be a string');
    const callback = new Webhook();
    log(`awaiting payment of ${amount} ${currency ?? '(no currency)'} for order ${input.order_id}`);
    log(`payment callback URL: ${callback.url}`);
    const payment = callback.next().data;
    const failed = payment && payment.status === 'failed';
    return {
      order_id: input.order_id,
      amount,
      status: failed ? 'payment-failed' : 'paid',
      payment,
    };
  },
});
