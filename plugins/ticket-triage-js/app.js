// ticket-triage in JavaScript: the same workflow, and the same output, as the Rust plugin.
//
// Input: {"ticket_id": string, "subject"?: string}.
// Output: {"ticket_id", "priority": "urgent" | "normal" | "unknown", "sla": <SLA callback
// data>, "resolution": <resolution callback data>}.
//
// Both callback URLs exist from the start, so a ticketing system may call `resolved`
// before `sla`: the resolution is kept until the run asks for it.

import { Failure, Webhook, log, workflow } from '../../sdk/js/latch.js';

const URGENT_SLA_HOURS = 4;

function priority(sla) {
  const hours = sla?.sla_hours;
  if (typeof hours !== 'number') return 'unknown';
  return hours <= URGENT_SLA_HOURS ? 'urgent' : 'normal';
}

export const { describe, run } = workflow({
  description: 'Prioritises a support ticket from its SLA, then waits for its resolution',
  main(input) {
    if (!input || typeof input.ticket_id !== 'string') throw new Failure('bad-input', 'ticket_id is required');
    if (!input.ticket_id.trim()) throw new Failure('bad-input', 'ticket_id must not be empty');
    const ticket = input.ticket_id;
    log(`triaging ticket ${ticket}: ${input.subject || '(no subject)'}`);

    const slaHook = new Webhook();
    // An agent may resolve the ticket by opening a link (GET, query as data) as well as
    // the ticketing system by POSTing JSON.
    const resolvedHook = new Webhook({ methods: ['GET', 'POST'] });
    log(`SLA callback URL: ${slaHook.url}`);
    log(`resolution callback URL: ${resolvedHook.url}`);

    const sla = slaHook.next().data;
    const level = priority(sla);
    log(`ticket ${ticket} priority: ${level}`);
    const resolution = resolvedHook.next().data;
    log(`ticket ${ticket} resolved`);
    return { ticket_id: ticket, priority: level, sla, resolution };
  },
});
