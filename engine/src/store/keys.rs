//! Key layouts. Big-endian numbers keep sled's byte order equal to numeric order, so
//! events scan in sequence, inbox calls in arrival order and timers by due time.

pub type RunKey = [u8; 16];

/// A run id is a UUID; its 16 bytes are the key prefix of everything the run owns.
pub fn run(id: &str) -> Option<RunKey> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

pub fn event(run: &RunKey, seq: u64) -> Vec<u8> {
    [run.as_slice(), &seq.to_be_bytes()].concat()
}

pub fn inbox_prefix(run: &RunKey, webhook: u32) -> Vec<u8> {
    [run.as_slice(), &webhook.to_be_bytes()].concat()
}

pub fn inbox(run: &RunKey, webhook: u32, arrival: u64) -> Vec<u8> {
    [run.as_slice(), &webhook.to_be_bytes(), &arrival.to_be_bytes()].concat()
}

/// A named trigger's inbox for a run: run, name, a zero byte (names have none), arrival.
pub fn trigger_inbox_prefix(run: &RunKey, name: &str) -> Vec<u8> {
    [run.as_slice(), name.as_bytes(), &[0]].concat()
}

pub fn trigger_inbox(run: &RunKey, name: &str, arrival: u64) -> Vec<u8> {
    [trigger_inbox_prefix(run, name).as_slice(), &arrival.to_be_bytes()].concat()
}

/// Runs waiting at a module's named trigger: module, zero, name, zero, then the run.
pub fn trigger_waiters_prefix(module: &str, name: &str) -> Vec<u8> {
    [module.as_bytes(), &[0], name.as_bytes(), &[0]].concat()
}

pub fn trigger_waiter(module: &str, name: &str, run: &RunKey) -> Vec<u8> {
    [trigger_waiters_prefix(module, name).as_slice(), run].concat()
}

/// The run id at the end of a trigger-waiter key.
pub fn trigger_waiter_run(key: &[u8]) -> Option<String> {
    let run = key.get(key.len().checked_sub(16)?..)?;
    uuid::Uuid::from_slice(run).ok().map(|u| u.to_string())
}

/// The arrival number at the end of an inbox key.
pub fn inbox_arrival(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(key.len().checked_sub(8)?..)?.try_into().ok()?))
}

/// A call a run did not take: run, then arrival.
pub fn not_taken(run: &RunKey, arrival: u64) -> Vec<u8> {
    [run.as_slice(), &arrival.to_be_bytes()].concat()
}

pub fn timer(due_ms: u64, run: &RunKey) -> Vec<u8> {
    [due_ms.to_be_bytes().as_slice(), run].concat()
}

pub fn parse_timer(key: &[u8]) -> Option<(u64, String)> {
    let due = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let run = uuid::Uuid::from_slice(key.get(8..24)?).ok()?;
    Some((due, run.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_sort_by_due_time_and_round_trip() {
        let run = *uuid::Uuid::now_v7().as_bytes();
        let (early, late) = (timer(5, &run), timer(256, &run));
        assert!(early < late);
        assert_eq!(parse_timer(&late), Some((256, uuid::Uuid::from_bytes(run).to_string())));
    }

    #[test]
    fn events_sort_by_sequence() {
        let run = [7u8; 16];
        assert!(event(&run, 9) < event(&run, 10));
        assert!(event(&run, 255) < event(&run, 256));
    }
}
