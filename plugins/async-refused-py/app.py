"""Async code in a workflow, which the SDK refuses: every wait blocks in the engine, so a
coroutine would never run. `main` hands back a coroutine, or with `{"in": "step"}` a
step's work does; the run fails with a message that says so.
"""

import latch


async def _work(attempt):
    return {"attempt": attempt}


async def _main(input):
    return {"input": input}


class WitWorld(latch.Workflow):
    description = "Refused: async code in a synchronous workflow"

    def main(self, input):
        if isinstance(input, dict) and input.get("in") == "step":
            return latch.step("async-work", _work)
        return _main(input)
