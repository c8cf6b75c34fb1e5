"""patch-demo in Python, version 1: waits for one call.

Input: anything. Output: {"version": 1, "stamped": bool, "data": <the call's data>}.
"""

import latch


class WitWorld(latch.Workflow):
    description = "Waits for one call (version 1 of the patch demo)"

    def main(self, input):
        hook = latch.Webhook()
        data = hook.next().data
        return {"version": 1, "stamped": False, "data": data}
