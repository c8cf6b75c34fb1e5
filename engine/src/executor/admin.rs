//! What the admin API reads and writes besides runs' lifecycles: modules, a run's view, its
//! log and its calls, API keys, secrets and trigger samples. `http` reaches the store only
//! through here, with names parsed once, at this edge.

use serde::Serialize;
use serde_json::{Value, json};

use super::{ExecError, Executor};
use crate::ids::{KeyName, ModuleName, RunId};
use crate::store::records::{
    ApiKeyRecord, Event, EventRecord, ModuleInfo, ModuleRecord, RequestRecord, RunRecord, TriggerInfo, WaitOutcome,
    Waiting, WebhookInfo,
};
use crate::store::{Inbox, Registry, RunLog, RunPage, RunQuery, StoreError, Unreadable};

/// A run as the API shows it: its record, its webhooks and their URLs, and where to call
/// what it waits on.
#[derive(Debug, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: RunRecord,
    pub waiting_on: Vec<WaitingView>,
    pub webhooks: Vec<WebhookInfo>,
}

/// One thing a run waits on, with the URL that delivers to it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum WaitingView {
    Webhook { webhook: String, url: String },
    Trigger { trigger: String, url: String },
}

impl Executor {
    fn module_name(&self, name: &str) -> Result<ModuleName, ExecError> {
        ModuleName::parse(name).map_err(|_| ExecError::UnknownModule(name.to_string()))
    }

    pub async fn module(&self, name: &str) -> Result<ModuleRecord, ExecError> {
        let unknown = || ExecError::UnknownModule(name.to_string());
        self.shared.store.module(&self.module_name(name)?).await?.ok_or_else(unknown)
    }

    pub async fn modules(&self) -> Result<Vec<ModuleRecord>, ExecError> {
        Ok(self.shared.store.modules().await?)
    }

    /// The newest version's description of a module: its triggers above all.
    pub async fn module_info(&self, name: &str) -> Result<ModuleInfo, ExecError> {
        let module = self.module(name).await?;
        let latest = module.latest().ok_or_else(|| ExecError::UnknownModule(name.to_string()))?;
        Ok(latest.info.clone())
    }

    /// The start trigger of the module's newest version at `suffix`.
    pub async fn start_trigger(&self, module: &str, suffix: &str) -> Result<(ModuleName, TriggerInfo), ExecError> {
        let name = self.module_name(module)?;
        let found = self.module_info(module).await?.triggers.into_iter().find(|t| t.suffix == *suffix);
        let trigger = found
            .ok_or_else(|| ExecError::UnknownTrigger(format!("module `{module}` has no trigger at `{suffix}`")))?;
        Ok((name, trigger))
    }

    /// A page of runs, newest first.
    pub async fn run_page(&self, query: &RunQuery) -> Result<RunPage, ExecError> {
        Ok(self.shared.store.run_page(query).await?)
    }

    pub async fn run(&self, id: &str) -> Result<RunRecord, ExecError> {
        let unknown = || ExecError::UnknownRun(id.to_string());
        let run_id = RunId::parse(id).map_err(|_| unknown())?;
        self.shared.store.run(run_id).await?.ok_or_else(unknown)
    }

    /// A run with the URLs of its webhooks, and of those it waits on. Its log is read
    /// leniently: a run with an unreadable record is still shown.
    pub async fn run_view(&self, id: &str) -> Result<RunView, ExecError> {
        let run = self.run(id).await?;
        let (events, _) = self.shared.store.readable_events(run.id).await?;
        let webhooks: Vec<WebhookInfo> = events
            .into_iter()
            .filter_map(|record| match record.event {
                Event::WebhookCreated { webhook: Ok(webhook) } => Some(webhook),
                _ => None,
            })
            .collect();
        let public_url = &self.shared.settings.public_url;
        let waiting_on = run
            .waiting_on
            .iter()
            .filter_map(|target| match target {
                Waiting::Trigger(name) => Some(WaitingView::Trigger {
                    trigger: name.to_string(),
                    url: format!("{public_url}/t/{}/{name}?execution={}", run.module, run.id),
                }),
                Waiting::Webhook(id) => webhooks
                    .iter()
                    .find(|w| w.id == *id)
                    .map(|w| WaitingView::Webhook { webhook: w.id.to_string(), url: w.url.clone() }),
            })
            .collect();
        Ok(RunView { run, waiting_on, webhooks })
    }

    /// A run's log; records that cannot be read are passed over and reported.
    pub async fn events(&self, id: &str) -> Result<(Vec<EventRecord>, Vec<Unreadable>), ExecError> {
        let run = self.run(id).await?;
        Ok(self.shared.store.readable_events(run.id).await?)
    }

    /// What arrived for a run: calls it took (`delivered`), calls waiting for it (`queued`;
    /// `held` when the caller still waits for the run to take it), and calls it never took
    /// (`not-taken`, with the reason, and whether the caller had been answered with a 2xx).
    pub async fn requests(&self, id: &str, webhook: Option<&str>) -> Result<Vec<Value>, ExecError> {
        let run = self.run(id).await?;
        let store = &self.shared.store;
        let view = |state: &str, request: RequestRecord| {
            let mut view = json!(request);
            view["state"] = json!(state);
            view
        };
        let (events, _) = store.readable_events(run.id).await?;
        let delivered: Vec<Value> = events
            .into_iter()
            .filter_map(|record| match record.event {
                Event::WaitEnded { result: WaitOutcome::Request { request }, .. } => Some(view("delivered", *request)),
                _ => None,
            })
            .collect();
        let queued = store.queued(run.id).await?;
        let not_taken: Vec<Value> = store
            .not_taken(run.id)
            .await?
            .into_iter()
            .map(|record| {
                let mut not_taken = view("not-taken", record.request);
                not_taken["reason"] = json!(record.reason);
                not_taken["acknowledged"] = json!(record.acknowledged);
                not_taken
            })
            .collect();
        // The three are read one after the other: a call taken or given up on meanwhile may
        // be read both as queued and in its final state, which is the one listed.
        let settled: std::collections::HashSet<Value> =
            delivered.iter().chain(&not_taken).map(|request| request["id"].clone()).collect();
        let queued = queued.into_iter().filter(|entry| !settled.contains(&json!(entry.request.id))).map(|entry| {
            let mut queued = view("queued", entry.request);
            queued["held"] = json!(entry.held);
            queued
        });
        Ok(delivered
            .into_iter()
            .chain(queued)
            .chain(not_taken)
            .filter(|request| webhook.is_none_or(|w| request["webhook"] == json!(w)))
            .collect())
    }

    /// Makes an API key; returns its record and the key, which is nowhere else (only its
    /// sha256 is stored).
    pub async fn create_api_key(&self, name: &str, roles: Vec<String>) -> Result<(ApiKeyRecord, String), ExecError> {
        let name = KeyName::parse(name)?;
        let key = crate::auth::new_api_key();
        let record = ApiKeyRecord { name, roles, key_sha256: crate::auth::digest(&key), created_at_ms: self.now_ms() };
        match self.shared.store.create_api_key(&record).await {
            Err(StoreError::NameTaken) => {
                Err(ExecError::NameTaken(format!("a key is named `{}` already", record.name)))
            }
            other => other.map(|()| (record, key)).map_err(ExecError::from),
        }
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, ExecError> {
        Ok(self.shared.store.api_keys().await?)
    }

    pub async fn revoke_api_key(&self, name: &str) -> Result<(), ExecError> {
        let unknown = || ExecError::UnknownKey(name.to_string());
        let name = KeyName::parse(name).map_err(|_| unknown())?;
        if self.shared.store.revoke_api_key(&name).await? { Ok(()) } else { Err(unknown()) }
    }

    /// Stores a signing secret by name; true if it is new.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<bool, ExecError> {
        let name = KeyName::parse(name)?;
        Ok(self.shared.store.put_secret(&name, value).await?)
    }

    pub async fn secret_names(&self) -> Result<Vec<String>, ExecError> {
        Ok(self.shared.store.secret_names().await?)
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), ExecError> {
        let unknown = || ExecError::UnknownSecret(name.to_string());
        let name = KeyName::parse(name).map_err(|_| unknown())?;
        if self.shared.store.delete_secret(&name).await? { Ok(()) } else { Err(unknown()) }
    }

    /// Arms a start trigger to capture its next call as a sample event (it starts no run).
    pub async fn listen_for_sample(&self, module: &str, trigger: &str) -> Result<(), ExecError> {
        let declared = self.module_info(module).await?.triggers.iter().any(|t| t.name == trigger);
        if !declared {
            return Err(ExecError::UnknownTrigger(format!("module `{module}` has no trigger named `{trigger}`")));
        }
        Ok(self.shared.store.listen_for_sample(&self.module_name(module)?, trigger).await?)
    }

    /// The captured sample event and the JSON Schema learnt from it.
    pub async fn sample(&self, module: &str, trigger: &str) -> Result<Option<Value>, ExecError> {
        Ok(self.shared.store.sample(&self.module_name(module)?, trigger).await?)
    }
}
