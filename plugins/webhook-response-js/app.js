// webhook-response in JavaScript: the same triggers, answers and outputs as the Rust plugin.
//
// - `POST|PATCH /t/{module}/orders/new` (header `x-shop` and a body with `order_id`
//   expected, else 422): the run answers 201 `{"order_id", "run_id"}`, or 202 when the
//   order's `priority` is `low` (the status is chosen at run time).
// - `GET /t/{module}/ping`: answered at once, 200 `{"pong":true,"run":"<run id>"}`; the
//   run's output is the query.
// - `POST /t/{module}/secure-orders?key=<api key>`: an API key in the URL; answered 202 at once.

import { Failure, runId, trigger, workflow } from '../../sdk/js/latch.js';

const EXPECTED = {
  type: 'object',
  properties: {
    headers: { type: 'object', required: ['x-shop'] },
    body: { type: 'object', required: ['order_id'], properties: { order_id: { type: 'string' } } },
  },
};

export const { describe, run } = workflow({
  description: 'Starts a run per incoming order and answers with a status chosen by the run',
  triggers: [
    trigger('new-order', 'orders/new', { methods: ['POST', 'PATCH'], expects: EXPECTED, manualMs: 30_000 }),
    trigger('ping', 'ping', { methods: ['GET'], answer: [200, { pong: true, run: '{{run_id}}' }] }),
    trigger('secure-orders', 'secure-orders', { urlKey: true }),
  ],
  main(input, request) {
    if (request === null) throw new Failure('bad-input', 'this module is started by its trigger URLs');
    if (request.webhook !== 'trigger:new-order') return { trigger: request.webhook, data: input };
    const orderId = input.order_id ?? null;
    const status = input.priority === 'low' ? 202 : 201;
    request.respond(status, { order_id: orderId, run_id: runId() });
    return { order_id: orderId, answered: status };
  },
});
