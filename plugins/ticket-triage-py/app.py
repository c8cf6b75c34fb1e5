"""ticket-triage in Python: the same workflow, and the same output, as the Rust plugin.

Input: {"ticket_id": string, "subject"?: string}.
Output: {"ticket_id", "priority": "urgent" | "normal" | "unknown", "sla": <SLA callback
data>, "resolution": <resolution callback data>}.

Both callback URLs exist from the start, so a ticketing system may call `resolved`
before `sla`: the resolution is kept until the run asks for it.
"""

import latch

URGENT_SLA_HOURS = 4.0


def priority(sla) -> str:
    hours = sla.get("sla_hours") if isinstance(sla, dict) else None
    if not isinstance(hours, (int, float)) or isinstance(hours, bool):
        return "unknown"
    return "urgent" if hours <= URGENT_SLA_HOURS else "normal"


class WitWorld(latch.Workflow):
    description = "Prioritises a support ticket from its SLA, then waits for its resolution"

    def main(self, input):
        if not isinstance(input, dict) or not isinstance(input.get("ticket_id"), str):
            raise latch.Failure("bad-input", "ticket_id is required")
        if not input["ticket_id"].strip():
            raise latch.Failure("bad-input", "ticket_id must not be empty")
        ticket = input["ticket_id"]
        latch.log(f"triaging ticket {ticket}: {input.get('subject') or '(no subject)'}")

        sla_hook = latch.Webhook()
        # An agent may resolve the ticket by opening a link (GET, query as data) as well
        # as the ticketing system by POSTing JSON.
        resolved_hook = latch.Webhook(methods=["GET", "POST"])
        latch.log(f"SLA callback URL: {sla_hook.url}")
        latch.log(f"resolution callback URL: {resolved_hook.url}")

        sla = sla_hook.next().data
        level = priority(sla)
        latch.log(f"ticket {ticket} priority: {level}")
        resolution = resolved_hook.next().data
        latch.log(f"ticket {ticket} resolved")
        return {"ticket_id": ticket, "priority": level, "sla": sla, "resolution": resolution}
