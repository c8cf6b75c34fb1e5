// Async code in a workflow, which the SDK refuses: every wait blocks in the engine, so a
// promise would never settle. `main` hands back a promise, or with {"in": "step"} a step's
// work does; the run fails with a message that says so.

import { step, workflow } from '../../sdk/js/latch.js';

export const { describe, run } = workflow({
  description: 'Refused: async code in a synchronous workflow',
  main(input) {
    if (input?.in === 'step') return step('async-work', async (attempt) => ({ attempt }));
    return (async () => ({ input }))();
  },
});
