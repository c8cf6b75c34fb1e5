"""order-approval in Python: the same workflow, and the same output, as the Rust plugin.

FlowRunner's order processing: prepare an order, then pause at the mid-flow trigger
`payment-confirmed` until the payment system calls
`/t/{module}/payment-confirmed?execution=<run id>|any|all`, then complete the order.
With `"trigger": "payment-verified"` it waits at a trigger that takes only callers with
an API key holding the `payments` role, and only once `body.status` is `confirmed`.

Input: {"order_id": string, "timeout_ms"?: ms, "trigger"?: name}.
Output: {"order_id", "run_id", "status": "completed" | "payment-timed-out", "payment"?,
"caller"?: API key name}.
"""

import latch


def _whole_ms(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


class WitWorld(latch.Workflow):
    description = "Prepares an order, then waits at the payment-confirmed trigger before completing it"
    named_triggers = [
        latch.NamedTrigger("payment-confirmed"),
        latch.NamedTrigger("payment-verified", bearer=["payments"], condition='body.status == "confirmed"'),
    ]

    def main(self, input):
        if not isinstance(input, dict) or not isinstance(input.get("order_id"), str):
            raise latch.Failure("bad-input", "order_id is required")
        trigger, timeout_ms = input.get("trigger", "payment-confirmed"), input.get("timeout_ms")
        if not isinstance(trigger, str) or not _whole_ms(timeout_ms):
            raise latch.Failure("bad-input", "trigger must be a name and timeout_ms whole milliseconds")
        latch.log(f"order {input['order_id']} prepared; waiting for {trigger}")
        payment = latch.wait_trigger(trigger, timeout_ms)
        if payment is None:
            return {"order_id": input["order_id"], "run_id": latch.run_id(), "status": "payment-timed-out"}
        return {
            "order_id": input["order_id"],
            "run_id": latch.run_id(),
            "status": "completed",
            "payment": payment.data,
            "caller": payment.caller.get("name") if payment.caller["type"] == "api-key" else None,
        }
