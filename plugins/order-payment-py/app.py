"""order-payment in Python: the same workflow, and the same output, as the Rust plugin.

Input: {"order_id": string, "amount": number, "currency"?: string}.
Output: {"order_id", "amount", "status": "paid" | "payment-failed", "payment": <callback data>}.
"""

import latch


class WitWorld(latch.Workflow):
    description = "Waits for a payment provider's callback confirming an order's payment"

    def main(self, input):
        if not isinstance(input, dict) or not isinstance(input.get("order_id"), str):
            raise latch.Failure("bad-input", "order_id is required")
        if not input["order_id"].strip():
            raise latch.Failure("bad-input", "order_id must not be empty")
        amount, currency = input.get("amount"), input.get("currency")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise latch.Failure("bad-input", "amount must be a number")
        if currency is not None and not isinstance(currency, str):
            raise latch.Failure("bad-input", "currency must be a string")
        callback = latch.Webhook()
        latch.log(f"awaiting payment of {amount} {currency or '(no currency)'} for order {input['order_id']}")
        latch.log(f"payment callback URL: {callback.url}")
        payment = callback.next().data
        failed = isinstance(payment, dict) and payment.get("status") == "failed"
        return {
            "order_id": input["order_id"],
            "amount": amount,
            "status": "payment-failed" if failed else "paid",
            "payment": payment,
        }
