//! Group commit: callers that need their writes durable share one fsync.
//!
//! Under load the flushes are paced, as PostgreSQL's `commit_delay` does: once a flush
//! covered several callers, the next one starts no sooner than `PACE` after it began, so
//! that it covers more. Each sled flush hands its buffer to sled's IO pool, which wakes
//! all seven of its threads; flushing back to back (one per fsync, ~3,000 a second)
//! spent about a tenth of the server's CPU on those wake-ups. A sequential caller (one
//! run resumed at a time) is not held back: its flushes cover one or two callers each.
//! A caller that comes less than `PACE` after a flush that covered several waits for the
//! rest of it.
//!
//! sled's own `flush_async` runs the blocking flush on sled's bounded IO thread pool, the
//! same pool that performs the log writes the flush waits for; with many concurrent
//! callers every pool thread ends up waiting and nothing writes (a deadlock seen with
//! ~200 concurrent callbacks). Here one dedicated thread flushes, and async callers wait
//! for a flush that began after their writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How far flushing has come: every ticket up to `done` has had its flush.
#[derive(Clone, Debug, Default)]
struct Progress {
    done: u64,
    /// When the latest flush failed: the tickets it was for (after `.0`, up to `.1`)
    /// and its error. A later flush that succeeds covers those writes too, so only the
    /// latest round's outcome matters.
    failed: Option<(u64, u64, Arc<sled::Error>)>,
}

impl Progress {
    fn outcome(&self, ticket: u64) -> Result<(), Arc<sled::Error>> {
        match &self.failed {
            Some((after, upto, error)) if ticket > *after && ticket <= *upto => Err(error.clone()),
            _ => Ok(()),
        }
    }
}

pub struct GroupCommit {
    requested: Arc<AtomicU64>,
    /// `None` only while dropping: closing the channel ends the flushing thread.
    wake: Option<mpsc::Sender<()>>,
    progress: watch::Receiver<Progress>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GroupCommit {
    /// Waits for the flushing thread to end: it holds a handle on the database, and the
    /// database's file lock must be free once the store is dropped (a reopen in the same
    /// process would otherwise race it).
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl GroupCommit {
    /// Starts the flushing thread; it ends when every handle is dropped.
    pub fn start(db: sled::Db) -> std::io::Result<GroupCommit> {
        let requested = Arc::new(AtomicU64::new(0));
        let (wake, woken) = mpsc::channel();
        let (report, progress) = watch::channel(Progress::default());
        let tickets = requested.clone();
        let flusher = std::thread::Builder::new()
            .name("latch-fsync".into())
            .spawn(move || flush_loop(&db, &tickets, &woken, &report))?;
        Ok(GroupCommit { requested, wake: Some(wake), progress, flusher: Some(flusher) })
    }

    /// Returns once every write made before this call is on disk.
    pub async fn flush(&self) -> Result<(), Arc<sled::Error>> {
        // The ticket is taken after the caller's writes; the flush that covers it reads
        // the ticket counter before it starts, so it starts after those writes.
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut progress = self.progress.clone();
        if self.wake.as_ref().is_none_or(|wake| wake.send(()).is_err()) {
            return Err(Arc::new(sled::Error::ReportableBug("the flushing thread is gone".into())));
        }
        let reached = progress.wait_for(|p| p.done >= ticket).await;
        match reached {
            Ok(p) => p.outcome(ticket),
            Err(_) => Err(Arc::new(sled::Error::ReportableBug("the flushing thread is gone".into()))),
        }
    }
}

/// The least time from one flush's start to the next one's while flushes cover several
/// callers. Measured with `latch-bench --hot-path-only` (64 callers): 1 ms took a callback
/// flood's flushes from about 2,900 to 1,000 a second, halved its context switches per
/// run and raised durable callbacks accepted by 15 to 25%; 1.5 and 2 ms did no better,
/// and the hot resume (one caller) is unchanged.
const PACE: Duration = Duration::from_millis(1);

/// How many callers one flush must have covered for the next one to be paced: a
/// resumed run's take and its caller's call can share a flush, and must not wait.
const PACED_FROM: u64 = 3;

/// How long to wait before the next flush, given when the last one started and how many
/// callers it covered.
fn pause_before_flush(last_start: Instant, last_covered: u64, now: Instant) -> Option<Duration> {
    if last_covered < PACED_FROM {
        return None;
    }
    (last_start + PACE).checked_duration_since(now).filter(|pause| !pause.is_zero())
}

fn flush_loop(db: &sled::Db, requested: &AtomicU64, woken: &mpsc::Receiver<()>, report: &watch::Sender<Progress>) {
    let mut done = 0;
    let (mut last_start, mut last_covered) = (Instant::now(), 0);
    while woken.recv().is_ok() {
        // Extra wake-ups left in the channel only cause a cheap check here.
        while requested.load(Ordering::SeqCst) > done {
            if let Some(pause) = pause_before_flush(last_start, last_covered, Instant::now()) {
                std::thread::sleep(pause);
            }
            // Read after the pause: the flush covers every caller that came during it.
            let target = requested.load(Ordering::SeqCst);
            last_start = Instant::now();
            let failed = db.flush().err().map(|error| {
                tracing::error!("flushing the store failed: {error}");
                (done, target, Arc::new(error))
            });
            last_covered = target - done;
            done = target;
            report.send_replace(Progress { done, failed });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_that_covered_few_callers_is_followed_at_once() {
        let start = Instant::now();
        for covered in 0..PACED_FROM {
            assert_eq!(pause_before_flush(start, covered, start), None);
        }
    }

    #[test]
    fn a_flush_that_covered_many_callers_is_followed_a_pace_after_it_began() {
        let start = Instant::now();
        let later = start + Duration::from_micros(300);
        assert_eq!(pause_before_flush(start, PACED_FROM, later), Some(PACE - Duration::from_micros(300)));
        assert_eq!(pause_before_flush(start, 50, start + PACE), None);
        assert_eq!(pause_before_flush(start, 50, start + PACE * 3), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_flushes_all_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path()).expect("sled opens");
        let commit = Arc::new(GroupCommit::start(db.clone()).expect("thread starts"));
        // Far more concurrent callers than sled's IO pool has threads.
        let waiters: Vec<_> = (0..500u32)
            .map(|n| {
                let (db, commit) = (db.clone(), commit.clone());
                tokio::spawn(async move {
                    db.insert(n.to_be_bytes(), &[1]).expect("insert");
                    commit.flush().await
                })
            })
            .collect();
        for waiter in waiters {
            waiter.await.expect("task").expect("flushed");
        }
        assert_eq!(db.len(), 500);
    }
}
