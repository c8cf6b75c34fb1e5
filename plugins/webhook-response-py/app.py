"""webhook-response in Python: the same triggers, answers and outputs as the Rust plugin.

- `POST|PATCH /t/{module}/orders/new` (header `x-shop` and a body with `order_id`
  expected, else 422): the run answers 201 `{"order_id", "run_id"}`, or 202 when the
  order's `priority` is `low` (the status is chosen at run time).
- `GET /t/{module}/ping`: answered at once, 200 `{"pong":true,"run":"<run id>"}`; the
  run's output is the query.
- `POST /t/{module}/secure-orders?key=<api key>`: an API key in the URL; answered 202 at once.
"""

import latch

EXPECTED = {
    "type": "object",
    "properties": {
        "headers": {"type": "object", "required": ["x-shop"]},
        "body": {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}},
    },
}


class WitWorld(latch.Workflow):
    description = "Starts a run per incoming order and answers with a status chosen by the run"
    triggers = [
        latch.Trigger("new-order", "orders/new", methods=["POST", "PATCH"], expects=EXPECTED, manual_ms=30_000),
        latch.Trigger("ping", "ping", methods=["GET"], answer=(200, {"pong": True, "run": "{{run_id}}"})),
        latch.Trigger("secure-orders", "secure-orders", url_key=True),
    ]

    def main(self, input):
        if self.request is None:
            raise latch.Failure("bad-input", "this module is started by its trigger URLs")
        if self.request.webhook != "trigger:new-order":
            return {"trigger": self.request.webhook, "data": input}
        order_id = input.get("order_id")
        status = 202 if input.get("priority") == "low" else 201
        self.request.respond(status, {"order_id": order_id, "run_id": latch.run_id()})
        return {"order_id": order_id, "answered": status}
