// patch-demo in JavaScript, version 2: takes the time behind `patched`, then waits for one
// call (so version 1's waiting runs still replay on it).
//
// Input: anything. Output: {"version": 2, "stamped": bool, "data": <the call's data>}.

import { Webhook, nowMs, patched, workflow } from '../../sdk/js/latch.js';

export const { describe, run } = workflow({
  description: 'Waits for one call (version 2 of the patch demo)',
  main(input) {
    const stamped = patched('stamp') && nowMs() > 0;
    const hook = new Webhook();
    const data = hook.next().data;
    return { version: 2, stamped: stamped, data };
  },
});
