"""async-verification in Python: the same workflow, and the same output, as the Rust plugin.

Submit a document to a vendor over outbound HTTP, handing it a callback URL whose caller
the run answers itself, then race the vendor's callback against a durable timer.

Input: {"document_id": string, "vendor_url": string, "deadline_ms"?: number}.
Output: {"document_id", "status": "verified" | "rejected" | "timed_out", "details"?}.
"""

import latch

# How long the vendor's callback is held for the run's answer.
ANSWER_DEADLINE_MS = 10_000

# Errors a retry cannot mend.
FATAL_CODES = {"host-not-allowed", "bad-url", "bad-request"}


def submit(input, callback_url: str) -> int:
    try:
        response = latch.http_request(
            "POST", input["vendor_url"], json_body={"document_id": input["document_id"], "callback_url": callback_url}
        )
    except latch.Failure as failure:
        if failure.code in FATAL_CODES:
            raise latch.Fatal(failure.code, failure.message) from None
        raise
    if response.ok:
        return response.status
    if 500 <= response.status < 600:
        raise latch.Failure("vendor-unavailable", response.body)
    raise latch.Fatal("vendor-refused", f"{response.status}: {response.body}")


class WitWorld(latch.Workflow):
    description = "Submits a document to a vendor and races its callback against a deadline"

    def main(self, input):
        if not isinstance(input, dict) or not all(isinstance(input.get(k), str) for k in ("document_id", "vendor_url")):
            raise latch.Failure("bad-input", "document_id and vendor_url are required")
        deadline_ms = input.get("deadline_ms", 30_000)
        if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, int) or deadline_ms < 0:
            raise latch.Failure("bad-input", "deadline_ms must be a whole number of milliseconds")
        callback = latch.Webhook(manual_ms=ANSWER_DEADLINE_MS)
        latch.step("submit-to-vendor", lambda attempt: submit(input, callback.url))

        first = latch.select(callback, latch.Timer(deadline_ms))
        if first.timed_out:
            return {"document_id": input["document_id"], "status": "timed_out"}
        if first.closed:
            raise latch.Failure("closed", "the callback URL closed without a callback")
        first.request.respond(200, {"ack": True})
        data = first.request.data if isinstance(first.request.data, dict) else {}
        return {
            "document_id": input["document_id"],
            "status": "verified" if data.get("approved") is True else "rejected",
            "details": data.get("details", data.get("reason")),
        }
