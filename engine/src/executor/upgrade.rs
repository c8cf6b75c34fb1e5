//! Moving waiting runs to another version of their module, proven by replay: a run moves
//! only when its whole log replays on the new code (`Runtime::check_replay`), and only
//! between activations (this holds the run's driver slot while it checks and moves it).
//!
//! A move writes an `upgraded` note into the run's log, then the run's record with the new
//! version. A crash between the two is finished at start-up (`finish_interrupted_move`):
//! the note is written only once the replay proved the new code, so each run is on
//! exactly one version, the one its record names.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{ExecError, Executor};
use crate::ids::{ModuleName, RunId};
use crate::runtime::{Divergence, ReplayCheck};
use crate::store::records::{Event, EventRecord, RunRecord, RunStatus};
use crate::store::{RunLog, RunQuery, event_record};

/// Which runs an upgrade looks at.
pub enum Selection {
    Runs(Vec<String>),
    AllWaiting,
}

/// What became of one run.
#[derive(Debug, Serialize)]
pub struct RunUpgrade {
    pub run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub result: UpgradeResult,
    /// Where the new code first left the run's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// Why the run was left alone, for `skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeResult {
    /// Dry run: the run would move.
    Compatible,
    /// The new code leaves the run's log: it stays where it is.
    Diverges,
    /// Moved to the new version.
    Upgraded,
    /// Not a waiting run of this module on another version, or busy past the wait.
    Skipped,
}

/// The shortest start of a version's id that names it.
const MIN_VERSION_PREFIX: usize = 8;

/// How long a move waits for a run's driver (an instance held hot after its wait, or an
/// activation under way) to let go.
const DRIVER_WAIT: Duration = Duration::from_secs(10);

impl Executor {
    /// Checks the module and the version (its id, or the start of it that `latch deploy`
    /// prints, if only one version starts so), and lists the runs selected. Returns the
    /// module, the version's whole id and the runs.
    pub async fn upgrade_plan(
        &self,
        module: &str,
        to: &str,
        selection: Selection,
    ) -> Result<(ModuleName, String, Vec<String>), ExecError> {
        let record = self.module(module).await?;
        let named = |version: &str| version == to || (to.len() >= MIN_VERSION_PREFIX && version.starts_with(to));
        let matching: Vec<&str> =
            record.versions.iter().map(|v| v.version.as_str()).filter(|version| named(version)).collect();
        let to = match matching[..] {
            [version] => version.to_string(),
            [] => {
                let modules = self.modules().await?;
                let owner = modules.iter().find(|m| m.versions.iter().any(|v| named(&v.version)));
                return Err(match owner {
                    Some(owner) => ExecError::VersionOfAnotherModule(to.to_string(), owner.name.to_string()),
                    None => ExecError::UnknownVersion(to.to_string(), module.to_string()),
                });
            }
            _ => {
                return Err(ExecError::UnknownVersion(format!("{to} (several versions start so)"), module.to_string()));
            }
        };
        let runs = match selection {
            Selection::Runs(ids) => ids,
            Selection::AllWaiting => self.waiting_runs(&record.name).await?,
        };
        Ok((record.name, to, runs))
    }

    /// Every waiting run of the module, oldest first.
    async fn waiting_runs(&self, module: &ModuleName) -> Result<Vec<String>, ExecError> {
        let mut ids = Vec::new();
        let mut query = RunQuery {
            status: Some(RunStatus::Waiting),
            module: Some(module.clone()),
            since_ms: None,
            before: None,
            limit: 1_000,
        };
        loop {
            let page = self.shared.store.run_page(&query).await?;
            ids.extend(page.runs.iter().map(|run| run.id.to_string()));
            match page.next {
                Some(next) => query.before = Some(next),
                None => break,
            }
        }
        ids.reverse();
        Ok(ids)
    }

    /// Checks one run against version `to` and, unless `dry_run`, moves it there.
    pub async fn upgrade_run(self: &Arc<Self>, module: &ModuleName, to: &str, id: &str, dry_run: bool) -> RunUpgrade {
        let skipped = |from: Option<String>, reason: String| RunUpgrade {
            run: id.to_string(),
            from,
            result: UpgradeResult::Skipped,
            divergence: None,
            reason: Some(reason),
        };
        let Ok(run_id) = RunId::parse(id) else { return skipped(None, format!("`{id}` is no run id")) };
        // A run being driven now is moved once its activation is over (below).
        let run = match self.movable(module, to, run_id, !dry_run).await {
            Ok(run) => run,
            Err((from, reason)) => return skipped(from, reason),
        };
        if dry_run {
            return self.check(&run, to).await.unwrap_or_else(|e| skipped(Some(run.version), e.to_string()));
        }
        // Between activations: the run's driver slot, held while it is checked and moved.
        if !self.claim_driver(run_id).await {
            return skipped(Some(run.version), "the run was being driven throughout; try again".into());
        }
        let moved = self.check_and_move(module, to, run_id).await;
        if !self.shared.live.release_unless_pending(run_id) {
            // A call came meanwhile: its wake-up found the slot taken, so drive it now.
            let executor = self.clone();
            tokio::spawn(async move { executor.drive(run_id).await });
        }
        moved.unwrap_or_else(|(from, reason)| skipped(from, reason))
    }

    /// The run, if it is a waiting run (or, with `or_running`, one being driven) of
    /// `module` on another version than `to`; else its version and why not.
    async fn movable(
        &self,
        module: &ModuleName,
        to: &str,
        id: RunId,
        or_running: bool,
    ) -> Result<RunRecord, (Option<String>, String)> {
        let run = match self.shared.store.run(id).await {
            Ok(Some(run)) => run,
            Ok(None) => return Err((None, "no such run".into())),
            Err(e) => return Err((None, e.to_string())),
        };
        let from = Some(run.version.clone());
        if run.module != *module {
            return Err((from, format!("a run of `{}`", run.module)));
        }
        if !(run.status == RunStatus::Waiting || (or_running && run.status == RunStatus::Running)) {
            return Err((from, format!("not waiting ({})", super::status_name(run.status))));
        }
        if run.version == to {
            return Err((from, "on that version already".into()));
        }
        Ok(run)
    }

    async fn check(&self, run: &RunRecord, to: &str) -> Result<RunUpgrade, ExecError> {
        let events = self.shared.store.events(run.id).await?;
        self.check_log(run, to, events).await
    }

    /// `check`, on the log already read.
    async fn check_log(
        &self,
        run: &RunRecord,
        to: &str,
        events: (Vec<EventRecord>, u64),
    ) -> Result<RunUpgrade, ExecError> {
        let (result, divergence) = match self.runtime.check_replay(run, to, events).await? {
            ReplayCheck::Compatible => (UpgradeResult::Compatible, None),
            ReplayCheck::Diverges(divergence) => (UpgradeResult::Diverges, Some(divergence)),
        };
        Ok(RunUpgrade { run: run.id.to_string(), from: Some(run.version.clone()), result, divergence, reason: None })
    }

    /// Under the run's driver slot: checks the run as it is now and moves it if its log
    /// replays on `to`.
    async fn check_and_move(
        &self,
        module: &ModuleName,
        to: &str,
        id: RunId,
    ) -> Result<RunUpgrade, (Option<String>, String)> {
        let run = self.movable(module, to, id, false).await?;
        let from = Some(run.version.clone());
        let failed = |e: ExecError| (from.clone(), e.to_string());
        let store = &self.shared.store;
        let events = store.events(id).await.map_err(|e| failed(e.into()))?;
        // The note goes after the log as read: the driver slot keeps it from growing.
        let seq = events.0.len() as u64;
        let mut checked = self.check_log(&run, to, events).await.map_err(failed)?;
        if checked.result == UpgradeResult::Diverges {
            return Ok(checked);
        }
        let note = Event::Upgraded { from: run.version.clone(), to: to.to_string() };
        let note = event_record(seq, self.now_ms(), note);
        store.append(id, &[note]).await.map_err(|e| failed(e.into()))?;
        let version = run.version.clone();
        let moved = RunRecord { version: to.to_string(), updated_at_ms: self.now_ms(), ..run };
        if let Err(e) = store.put_run(&moved).await {
            // The note must not move the run at the next start: a note moving it back.
            let back = Event::Upgraded { from: to.to_string(), to: version };
            let back = event_record(seq + 1, self.now_ms(), back);
            if let Err(e) = store.append(id, &[back]).await {
                tracing::error!(run = %id, "the run's move could not be undone in its log: {e}");
            }
            return Err(failed(e.into()));
        }
        tracing::info!(run = %id, from = ?from, to, "upgraded the run");
        checked.result = UpgradeResult::Upgraded;
        Ok(checked)
    }

    /// Takes the run's driver slot, waiting while another driver holds it.
    async fn claim_driver(&self, id: RunId) -> bool {
        let deadline = tokio::time::Instant::now() + DRIVER_WAIT;
        while !self.shared.live.try_claim(id) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// At start-up: a run whose log notes a move its record does not show yet (a crash
    /// came between the two writes) is put on the version the note names. Returns the
    /// run's record as it stands.
    pub(super) async fn finish_interrupted_move(
        &self,
        run: RunRecord,
        events: &[Event],
    ) -> Result<RunRecord, ExecError> {
        let last_move = events.iter().rev().find_map(|event| match event {
            Event::Upgraded { to, .. } => Some(to),
            _ => None,
        });
        match last_move {
            Some(to) if *to != run.version => {
                let moved = RunRecord { version: to.clone(), ..run };
                self.shared.store.put_run(&moved).await?;
                tracing::info!(run = %moved.id, to, "finished moving the run to its new version");
                Ok(moved)
            }
            _ => Ok(run),
        }
    }
}
