use crate::__private::bindings::latch::workflow::waits;
use crate::{Request, Webhook};

/// Something to wait for with [`select`].
#[derive(Clone, Copy, Debug)]
pub enum Waitable<'a> {
    /// The next call on this webhook.
    Webhook(&'a Webhook),
    /// The next call to the module's named trigger for this run:
    /// `/t/{module}/{name}?execution=<run id>|any|all`.
    Trigger(&'a str),
    /// A durable timer this many milliseconds from now.
    Timer(u64),
    /// A durable timer at this moment, in milliseconds since the Unix epoch.
    Deadline(u64),
}

/// How the first ready waitable ended.
// One is returned per wait: boxing the request would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A call arrived on the webhook.
    Request(Request),
    /// The webhook closed (or expired) before a call came.
    Closed,
    /// The timer fired.
    TimedOut,
}

/// The result of [`select`]: which waitable was first, and how.
#[derive(Clone, Debug)]
pub struct Selected {
    /// Its position in the list given to [`select`].
    pub index: usize,
    /// What happened to it.
    pub outcome: Outcome,
}

/// Waits for the first of several webhooks and timers. A call that arrives on a webhook
/// that did not win is kept for a later wait on it: nothing is lost to the race.
pub fn select(waitables: &[Waitable<'_>]) -> Selected {
    let list: Vec<waits::Waitable> = waitables
        .iter()
        .map(|w| match w {
            Waitable::Webhook(hook) => waits::Waitable::Webhook(hook.id().to_string()),
            Waitable::Trigger(name) => waits::Waitable::Trigger(name.to_string()),
            Waitable::Timer(ms) => waits::Waitable::Timer(*ms),
            Waitable::Deadline(at) => waits::Waitable::Deadline(*at),
        })
        .collect();
    let selected = waits::select(&list);
    Selected {
        index: selected.index as usize,
        outcome: match selected.outcome {
            waits::NextResult::Request(request) => Outcome::Request(request.into()),
            waits::NextResult::Closed => Outcome::Closed,
            waits::NextResult::TimedOut => Outcome::TimedOut,
        },
    }
}

/// Waits at the module's named trigger (FlowRunner's mid-flow External Callback) until a
/// call to `/t/{module}/{name}?execution=<this run's id>|any|all` resumes the run, or
/// `timeout_ms` pass (`None`). A call that came before the wait is taken at once.
pub fn wait_trigger(name: &str, timeout_ms: Option<u64>) -> Option<Request> {
    let mut waitables = vec![Waitable::Trigger(name)];
    waitables.extend(timeout_ms.map(Waitable::Timer));
    match select(&waitables).outcome {
        Outcome::Request(request) => Some(request),
        Outcome::Closed | Outcome::TimedOut => None,
    }
}

/// Sleeps durably: the run holds no instance meanwhile, and a restart does not lose
/// the timer.
pub fn sleep(ms: u64) {
    waits::sleep(ms);
}

/// Sleeps durably until this moment, in milliseconds since the Unix epoch.
pub fn sleep_until(unix_ms: u64) {
    waits::sleep_until(unix_ms);
}
