"""patch-demo in Python, version 2: takes the time behind `patched`, then waits for one
call (so version 1's waiting runs still replay on it).

Input: anything. Output: {"version": 2, "stamped": bool, "data": <the call's data>}.
"""

import latch


class WitWorld(latch.Workflow):
    description = "Waits for one call (version 2 of the patch demo)"

    def main(self, input):
        stamped = latch.patched("stamp") and latch.now_ms() > 0
        hook = latch.Webhook()
        data = hook.next().data
        return {"version": 2, "stamped": stamped, "data": data}
