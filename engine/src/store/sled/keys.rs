//! Key layouts. Big-endian numbers keep sled's byte order equal to numeric order, so
//! events scan in sequence, inbox calls in arrival order and timers by due time.

use crate::ids::{ModuleName, RunId, TriggerName, WebhookId};
use crate::store::Channel;

pub fn event(run: RunId, seq: u64) -> Vec<u8> {
    [run.bytes().as_slice(), &seq.to_be_bytes()].concat()
}

/// The arrival number of a single-use webhook's one slot: it sorts before any other.
pub const SLOT: u64 = 0;

/// A channel's calls for a run: webhook calls under the run and the webhook's number; named
/// trigger calls under the run, the name and a zero byte (names have none).
pub fn channel_prefix(run: RunId, channel: &Channel) -> Vec<u8> {
    match channel {
        Channel::Webhook(WebhookId(number)) => [run.bytes().as_slice(), &number.to_be_bytes()].concat(),
        Channel::Trigger(name) => [run.bytes().as_slice(), name.as_str().as_bytes(), &[0]].concat(),
    }
}

pub fn call(run: RunId, channel: &Channel, arrival: u64) -> Vec<u8> {
    [channel_prefix(run, channel).as_slice(), &arrival.to_be_bytes()].concat()
}

/// The number at the end of an inbox (or not-taken) key.
pub fn arrival(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(key.len().checked_sub(8)?..)?.try_into().ok()?))
}

/// The run at the start of a key.
pub fn run_of(key: &[u8]) -> Option<RunId> {
    Some(RunId::from_bytes(key.get(..16)?.try_into().ok()?))
}

/// The webhook of a webhook inbox key (run, number, arrival).
pub fn webhook_of(key: &[u8]) -> Option<WebhookId> {
    Some(WebhookId(u32::from_be_bytes(key.get(16..20)?.try_into().ok()?)))
}

/// The name of a named-trigger inbox key (run, name, zero, arrival).
pub fn trigger_of(key: &[u8]) -> Option<TriggerName> {
    let name = key.get(16..key.len().checked_sub(9)?)?;
    TriggerName::parse(std::str::from_utf8(name).ok()?).ok()
}

/// Runs waiting at a module's named trigger: module, zero, name, zero, then the run.
pub fn trigger_waiters_prefix(module: &ModuleName, name: &TriggerName) -> Vec<u8> {
    [module.as_str().as_bytes(), &[0], name.as_str().as_bytes(), &[0]].concat()
}

pub fn trigger_waiter(module: &ModuleName, name: &TriggerName, run: RunId) -> Vec<u8> {
    [trigger_waiters_prefix(module, name).as_slice(), &run.bytes()].concat()
}

/// The run at the end of a trigger-waiter key.
pub fn trigger_waiter_run(key: &[u8]) -> Option<RunId> {
    Some(RunId::from_bytes(key.get(key.len().checked_sub(16)?..)?.try_into().ok()?))
}

/// A call a run did not take: run, then arrival.
pub fn not_taken(run: RunId, arrival: u64) -> Vec<u8> {
    [run.bytes().as_slice(), &arrival.to_be_bytes()].concat()
}

pub fn timer(due_ms: u64, run: RunId) -> Vec<u8> {
    [due_ms.to_be_bytes().as_slice(), &run.bytes()].concat()
}

pub fn parse_timer(key: &[u8]) -> Option<(u64, RunId)> {
    let due = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    Some((due, RunId::from_bytes(key.get(8..24)?.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_sort_by_due_time_and_round_trip() {
        let run = RunId::new();
        let (early, late) = (timer(5, run), timer(256, run));
        assert!(early < late);
        assert_eq!(parse_timer(&late), Some((256, run)));
    }

    #[test]
    fn events_sort_by_sequence_and_calls_by_arrival_with_the_slot_first() {
        let run = RunId::new();
        assert!(event(run, 9) < event(run, 10) && event(run, 255) < event(run, 256));
        let hook = Channel::Webhook(WebhookId(2));
        assert!(call(run, &hook, SLOT) < call(run, &hook, 1));
        assert_eq!(webhook_of(&call(run, &hook, 7)), Some(WebhookId(2)));
        let trigger = Channel::Trigger(TriggerName::parse("paid").expect("a name"));
        let key = call(run, &trigger, 9);
        assert_eq!(
            (trigger_of(&key), arrival(&key), run_of(&key)),
            (TriggerName::parse("paid").ok(), Some(9), Some(run))
        );
    }
}
