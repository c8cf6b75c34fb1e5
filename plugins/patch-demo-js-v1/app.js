// patch-demo in JavaScript, version 1: waits for one call.
//
// Input: anything. Output: {"version": 1, "stamped": bool, "data": <the call's data>}.

import { Webhook, workflow } from '../../sdk/js/latch.js';

export const { describe, run } = workflow({
  description: 'Waits for one call (version 1 of the patch demo)',
  main(input) {
    const hook = new Webhook();
    const data = hook.next().data;
    return { version: 1, stamped: false, data };
  },
});
