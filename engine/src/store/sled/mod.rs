//! The embedded backend: sled. Typed records in, typed records out; the only code that
//! knows tree names, key layouts and encodings.
//!
//! It never uses a sled transaction: the first transaction in a process turns on sled's
//! global reader-writer lock for good, after which every write waits behind every fsync.
//! Multi-record writes follow the order and recovery rules of `store`'s doc instead, with
//! compare-and-swap where two writers race. Durable writes share fsyncs (`GroupCommit`).

mod compact;
mod group_commit;
mod keys;

use std::path::Path;

use super::CommitLatency;
use super::codec::{decode, encode, event_type};
use super::records::{
    ApiKeyRecord, Event, EventRecord, HookRecord, HookState, IdempotencyRecord, InboxEntry, ModuleRecord,
    NotTakenReason, NotTakenRecord, RequestRecord, RunRecord, WaitOutcome,
};
use super::{
    Channel, Claimed, Delivery, DueTimers, Inbox, Registry, Result, RunLog, RunPage, RunQuery, StoreError, Timers,
    Unreadable, Written,
};
use crate::ids::{KeyName, ModuleName, RunId, Token, TriggerName, WebhookId};
use std::sync::Arc;

use group_commit::GroupCommit;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Where the id counter of a compacted store starts.
const ID_BASE_META: &str = "id-base";

/// At most this many refused calls are kept per run; more are only logged.
const REFUSED_KEPT_PER_RUN: usize = 100;

/// The next id a store would hand out: its base plus sled's counter.
fn next_id_of(db: &sled::Db) -> Result<u64> {
    let meta = db.open_tree("meta")?;
    let base = meta.get(ID_BASE_META)?.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes);
    Ok(base + db.generate_id()?)
}

/// What a single-use webhook's slot holds once its call was taken, or once it closed
/// empty: it takes no other call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mark {
    Taken,
    Closed,
}

/// An inbox value: a call, or a slot's mark.
// Decoded and consumed at once: boxing the call would add an allocation to every read.
#[allow(clippy::large_enum_variant)]
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Slot {
    Call(InboxEntry),
    Mark { mark: Mark },
}

impl Slot {
    /// Reads an inbox value in two plain passes, its flags and then its call. serde's
    /// `untagged` (and `InboxEntry`'s `flatten`) would first copy the whole call, headers
    /// and body, into an intermediate tree and read it from there.
    fn decode(bytes: &[u8]) -> Result<Slot> {
        #[derive(serde::Deserialize)]
        struct Flags {
            #[serde(default)]
            mark: Option<Mark>,
            #[serde(default)]
            held: bool,
            #[serde(default)]
            taking: bool,
        }
        let flags: Flags = decode(bytes)?;
        if let Some(mark) = flags.mark {
            return Ok(Slot::Mark { mark });
        }
        let request = decode(bytes)?;
        Ok(Slot::Call(InboxEntry { request, held: flags.held, taking: flags.taking }))
    }
}

/// A call read from an inbox, with its key and its bytes as stored.
struct StoredCall {
    key: sled::IVec,
    stored: sled::IVec,
    entry: InboxEntry,
}

#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    commit: Arc<GroupCommit>,
    commits: CommitLatency,
    /// Added to sled's id counter, which a compaction starts afresh (see `compact`).
    id_base: u64,
    meta: sled::Tree,
    modules: sled::Tree,
    blobs: sled::Tree,
    runs: sled::Tree,
    events: sled::Tree,
    hooks: sled::Tree,
    inbox: sled::Tree,
    timers: sled::Tree,
    /// API keys by the sha256 of the key; `key_names` maps a name to that digest.
    api_keys: sled::Tree,
    key_names: sled::Tree,
    secrets: sled::Tree,
    /// Senders' message ids of accepted calls, so that retries get the first answer.
    messages: sled::Tree,
    /// Calls that reached a run's inbox and that it never took, per run, by arrival.
    not_taken: sled::Tree,
    /// Calls to named triggers, per run, until the run takes them.
    trigger_inbox: sled::Tree,
    /// Runs waiting at a module's named trigger; the value is when the wait began.
    trigger_waiters: sled::Tree,
}

/// How long `open` waits for another handle on the same files to let go of their lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, waiting a little while its files are locked: a store dropped a moment ago
/// may still hold the lock while sled's background threads end. Past `LOCK_WAIT` the lock
/// is someone else's (another server on the same data dir) and the error says so.
pub(super) fn open_waiting_for_the_lock(config: &sled::Config) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            // sled reports a held lock as an `Other` error and keeps only its text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Unavailable(format!("the data dir is in use by another process ({e})")));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with sled's page cache bounded to
    /// `cache_bytes`: past it, records are read back from disk. Space that deleted records
    /// left is reused at once, and given back to the filesystem here, at start-up (see
    /// `compact`).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        compact::finish_interrupted(dir)?;
        compact::compact_or_carry_on(dir)?;
        let db = open_waiting_for_the_lock(&sled::Config::new().path(dir.join("sled")).cache_capacity(cache_bytes))?;
        let meta = db.open_tree("meta")?;
        let id_base = meta.get(ID_BASE_META)?.and_then(|v| be_u64(&v)).unwrap_or(0);
        SledStore {
            id_base,
            meta,
            modules: db.open_tree("modules")?,
            blobs: db.open_tree("blobs")?,
            runs: db.open_tree("runs")?,
            events: db.open_tree("events")?,
            hooks: db.open_tree("hooks")?,
            inbox: db.open_tree("inbox")?,
            timers: db.open_tree("timers")?,
            api_keys: db.open_tree("api_keys")?,
            key_names: db.open_tree("key_names")?,
            secrets: db.open_tree("secrets")?,
            messages: db.open_tree("messages")?,
            not_taken: db.open_tree("not_taken")?,
            trigger_inbox: db.open_tree("trigger_inbox")?,
            trigger_waiters: db.open_tree("trigger_waiters")?,
            commit: Arc::new(GroupCommit::start(db.clone())?),
            commits: CommitLatency::default(),
            db,
        }
        .free_names_without_keys()
    }

    /// At start-up: a key's name that names no key was left by a crash between a key's
    /// two writes (made: the name, then the key; revoked: the key, then the name).
    fn free_names_without_keys(self) -> Result<SledStore> {
        for entry in self.key_names.iter() {
            let (name, digest) = entry?;
            if !self.api_keys.contains_key(&digest)? {
                let _ = self.key_names.compare_and_swap(name, Some(digest), None::<&[u8]>)?;
            }
        }
        Ok(self)
    }

    /// Makes every write so far durable; concurrent callers share one fsync.
    async fn durable(&self) -> Result<()> {
        let flushed = self.commits.time(self.commit.flush()).await;
        flushed.map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub fn commit_latency(&self) -> &CommitLatency {
        &self.commits
    }

    fn inbox_of(&self, channel: &Channel) -> &sled::Tree {
        match channel {
            Channel::Webhook(_) => &self.inbox,
            Channel::Trigger(_) => &self.trigger_inbox,
        }
    }

    /// The calls waiting on a channel (marks passed over), oldest first, with their keys
    /// and their stored bytes (what a compare-and-swap of the call expects).
    fn calls(&self, run: RunId, channel: &Channel) -> impl Iterator<Item = Result<StoredCall>> + '_ {
        self.inbox_of(channel).scan_prefix(keys::channel_prefix(run, channel)).filter_map(|item| {
            let decoded = item.map_err(StoreError::from).and_then(|(key, value)| {
                let slot = Slot::decode(&value)?;
                Ok((key, value, slot))
            });
            match decoded {
                Ok((key, stored, Slot::Call(entry))) => Some(Ok(StoredCall { key, stored, entry })),
                Ok((.., Slot::Mark { .. })) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }

    /// How many refused calls of the run are kept (counted up to the cap).
    fn refused_kept(&self, run: RunId) -> Result<usize> {
        let mut count = 0;
        for value in self.not_taken.scan_prefix(run.bytes()).values() {
            // One that cannot be read counts as refused: it stops no run's end and no start-up.
            let refused = decode::<NotTakenRecord>(&value?).map_or(true, |record| !record.acknowledged);
            count += usize::from(refused);
            if count >= REFUSED_KEPT_PER_RUN {
                break;
            }
        }
        Ok(count)
    }

    /// Lists a call the run will not take: an acknowledged one whole, a refused one by its
    /// identity only (its caller was told; a flood of refused calls must not fill the disk).
    fn note_not_taken(
        &self,
        run: RunId,
        (arrival, entry): (u64, &InboxEntry),
        reason: NotTakenReason,
        now: u64,
    ) -> Result<Option<(sled::IVec, Vec<u8>)>> {
        let record = if entry.held {
            if self.refused_kept(run)? >= REFUSED_KEPT_PER_RUN {
                return Ok(None);
            }
            NotTakenRecord::refused(entry.request.clone(), reason, now)
        } else {
            NotTakenRecord { request: entry.request.clone(), acknowledged: true, reason, at_ms: now }
        };
        // Keyed by the call's own number: every single-use webhook's slot is at arrival 0.
        let key = sled::IVec::from(keys::not_taken(run, entry.request.arrival().unwrap_or(arrival)));
        let written = encode(&record)?;
        self.not_taken.insert(&key, written.as_slice())?;
        Ok(Some((key, written)))
    }

    /// Moves every call left on a channel to the run's not-taken list: written there
    /// first, then taken out of the inbox if it is still there, unclaimed. One that went
    /// meanwhile (claimed by its run, withdrawn by its caller, taken back by a delivery that
    /// saw the close) is struck off the list again: it was not left behind.
    fn move_to_not_taken(
        &self,
        run: RunId,
        channel: &Channel,
        reason: NotTakenReason,
        now_ms: u64,
    ) -> Result<Vec<InboxEntry>> {
        let inbox = self.inbox_of(channel);
        let mut moved = Vec::new();
        for item in self.calls(run, channel).collect::<Vec<_>>() {
            let StoredCall { key, stored, entry } = item?;
            if entry.taking {
                continue;
            }
            let arrival = keys::arrival(&key).unwrap_or_default();
            let noted = self.note_not_taken(run, (arrival, &entry), reason, now_ms)?;
            if inbox.compare_and_swap(&key, Some(stored), None::<&[u8]>)?.is_ok() {
                moved.push(entry);
            } else if let Some((key, written)) = noted {
                // Only this note: a withdrawal may have noted the call since, under its key.
                let _ = self.not_taken.compare_and_swap(key, Some(written), None::<&[u8]>)?;
            }
        }
        Ok(moved)
    }

    /// Whether the webhook's single-use slot holds a call or a mark.
    fn slot_used(&self, hook: &HookRecord) -> Result<bool> {
        let channel = Channel::Webhook(hook.webhook());
        Ok(self.inbox.contains_key(keys::call(hook.run_id, &channel, keys::SLOT))?)
    }

    /// Whether a token's webhook no longer takes calls, so that another run may take the
    /// token over.
    fn hook_done(&self, hook: &HookRecord, now_ms: u64) -> Result<bool> {
        Ok(!hook.takes_calls(now_ms) || (hook.single_use && self.slot_used(hook)?))
    }

    /// Whether the run's log holds a request (at a wait, or as its start).
    fn in_log(&self, run: RunId, request_id: &str) -> Result<bool> {
        for value in self.events.scan_prefix(run.bytes()).values() {
            let found = match decode::<EventRecord>(&value?) {
                Ok(EventRecord {
                    event: Event::WaitEnded { result: WaitOutcome::Request { request }, .. }, ..
                }) => request.id == request_id,
                Ok(EventRecord { event: Event::Started { trigger: Some(request), .. }, .. }) => {
                    request.id == request_id
                }
                _ => false,
            };
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Repairs one inbox tree at start-up (see `repair_inbox`).
    fn repair(&self, tree: &sled::Tree, webhooks: bool, now_ms: u64) -> Result<usize> {
        let mut refused = 0;
        for item in tree.iter() {
            let (key, value) = item?;
            let Some(run) = keys::run_of(&key) else { continue };
            let Some(channel) = channel_at(&key, webhooks) else { continue };
            let arrival = keys::arrival(&key).unwrap_or_default();
            let entry = match Slot::decode(&value) {
                Ok(Slot::Call(entry)) => entry,
                Ok(Slot::Mark { .. }) => continue,
                Err(e) => {
                    // One bad record must not stop the server from starting; it is listed.
                    tracing::error!(%run, "an unreadable call in an inbox, listed as not taken: {e}");
                    let unreadable = InboxEntry::unreadable(&channel, self.next_arrival()?, now_ms);
                    self.note_not_taken(run, (arrival, &unreadable), NotTakenReason::Unreadable, now_ms)?;
                    // A single-use webhook's slot stays used: its URL takes no other call.
                    if webhooks && arrival == keys::SLOT {
                        tree.insert(&key, encode(&Slot::Mark { mark: Mark::Taken })?)?;
                    } else {
                        tree.remove(&key)?;
                    }
                    continue;
                }
            };
            if entry.taking && (!entry.held || self.in_log(run, &entry.request.id)?) {
                self.settle_take(tree, webhooks, &key, run, entry)?;
                continue;
            }
            if !entry.held {
                continue;
            }
            // Held: its caller is gone with the last process, unanswered. The sender's
            // retry is the one that counts; a single-use slot takes it.
            self.note_not_taken(run, (arrival, &entry), NotTakenReason::Restarted, now_ms)?;
            tree.remove(&key)?;
            refused += 1;
        }
        Ok(refused)
    }

    /// A take cut short: finished if its call is in the run's log (true), else the call is
    /// queued again.
    fn settle_take(
        &self,
        tree: &sled::Tree,
        webhooks: bool,
        key: &[u8],
        run: RunId,
        entry: InboxEntry,
    ) -> Result<bool> {
        let (Some(arrival), Some(channel)) = (keys::arrival(key), channel_at(key, webhooks)) else { return Ok(false) };
        if self.in_log(run, &entry.request.id)? {
            let slot = arrival == keys::SLOT && webhooks;
            self.finish_take(run, &Claimed { channel, arrival, entry, slot })?;
            return Ok(true);
        }
        tree.insert(key, encode(&Slot::Call(InboxEntry { taking: false, ..entry }))?)?;
        Ok(false)
    }

    fn finish_take(&self, run: RunId, claimed: &Claimed) -> Result<()> {
        let key = keys::call(run, &claimed.channel, claimed.arrival);
        let tree = self.inbox_of(&claimed.channel);
        if claimed.slot {
            tree.insert(key, encode(&Slot::Mark { mark: Mark::Taken })?)?;
        } else {
            tree.remove(key)?;
        }
        Ok(())
    }

    /// Deletes a run, its log next to last and its record last: its webhooks are found in
    /// its log, and start-up removes a record without a log (a creation cut short). So a
    /// deletion cut short at any point is finished by the next sweep (the record is still
    /// there) or by start-up (only the record is left). Stops after `removals` keys, as a
    /// crash would, for the tests.
    async fn delete_run_until(&self, id: RunId, removals: usize) -> Result<()> {
        let mut doomed: Vec<(&sled::Tree, sled::IVec)> = Vec::new();
        for (token, webhook) in self.webhooks_of(id).await? {
            if self.hook(&token).await?.is_some_and(|hook| hook.is(id, webhook)) {
                doomed.push((&self.hooks, token.as_str().as_bytes().into()));
            }
        }
        for tree in [&self.inbox, &self.trigger_inbox, &self.not_taken] {
            for key in tree.scan_prefix(id.bytes()).keys() {
                doomed.push((tree, key?));
            }
        }
        doomed.push((&self.meta, format!("cancel:{id}").as_bytes().into()));
        for key in self.events.scan_prefix(id.bytes()).keys() {
            doomed.push((&self.events, key?));
        }
        doomed.push((&self.runs, id.bytes().as_slice().into()));
        for (tree, key) in doomed.into_iter().take(removals) {
            tree.remove(key)?;
        }
        self.durable().await
    }

    /// Runs whose record exists without a `started` event: a creation a crash cut short.
    fn remove_unstarted_runs(&self) -> Result<()> {
        for key in self.runs.iter().keys() {
            let key = key?;
            let started = self.events.scan_prefix(&key).keys().next().is_some();
            if !started {
                tracing::info!("removing a run whose creation did not finish");
                self.runs.remove(&key)?;
            }
        }
        Ok(())
    }
}

impl RunLog for SledStore {
    async fn create_run(&self, run: &RunRecord, started: &EventRecord) -> Result<()> {
        self.runs.insert(run.id.bytes(), encode(run)?)?;
        self.events.insert(keys::event(run.id, started.seq), encode(started)?)?;
        self.durable().await
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.runs.get(id.bytes())?.map(|v| decode(&v)).transpose()
    }

    async fn put_run(&self, run: &RunRecord) -> Result<()> {
        self.runs.insert(run.id.bytes(), encode(run)?)?;
        Ok(())
    }

    async fn runs(&self) -> Result<(Vec<RunRecord>, Vec<Unreadable>)> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for item in self.runs.iter() {
            let (key, bytes) = item?;
            match decode::<RunRecord>(&bytes) {
                Ok(run) => out.push(run),
                Err(e) => {
                    let key = keys::run_of(&key).map_or_else(|| hex::encode(&key), |id| id.to_string());
                    tracing::error!(run = %key, "skipping an unreadable run record: {e}");
                    unreadable.push(Unreadable { key, error: e.to_string() });
                }
            }
        }
        Ok((out, unreadable))
    }

    async fn run_page(&self, query: &RunQuery) -> Result<RunPage> {
        let mut page = RunPage::default();
        let older = match query.before {
            Some(before) => self.runs.range(..before.bytes()),
            None => self.runs.iter(),
        };
        for item in older.rev() {
            let (key, bytes) = item?;
            let name = || keys::run_of(&key).map_or_else(|| hex::encode(&key), |id| id.to_string());
            if !page.take(query, name, decode(&bytes)) {
                break;
            }
        }
        Ok(page)
    }

    async fn events(&self, id: RunId) -> Result<(Vec<EventRecord>, u64)> {
        let mut bytes = 0;
        let mut events = Vec::new();
        for value in self.events.scan_prefix(id.bytes()).values() {
            let value = value?;
            bytes += value.len() as u64;
            events.push(decode(&value)?);
        }
        Ok((events, bytes))
    }

    async fn readable_events(&self, id: RunId) -> Result<(Vec<EventRecord>, Vec<Unreadable>)> {
        let (mut events, mut unreadable) = (Vec::new(), Vec::new());
        for item in self.events.scan_prefix(id.bytes()) {
            let (key, value) = item?;
            match decode(&value) {
                Ok(event) => events.push(event),
                Err(e) => {
                    let seq = keys::arrival(&key).map_or_else(|| hex::encode(&key), |seq| seq.to_string());
                    unreadable.push(Unreadable { key: seq, error: e.to_string() });
                }
            }
        }
        Ok((events, unreadable))
    }

    async fn append(&self, id: RunId, events: &[EventRecord]) -> Result<()> {
        for record in events {
            self.events.insert(keys::event(id, record.seq), encode(record)?)?;
        }
        self.durable().await
    }

    async fn webhooks_of(&self, id: RunId) -> Result<Vec<(Token, WebhookId)>> {
        let mut webhooks = Vec::new();
        for value in self.events.scan_prefix(id.bytes()).values() {
            let value = value?;
            // Only the event's type is read from the others: a full decode of every event
            // (request bodies and all) made this a tenth of ending a run.
            if event_type(&value).is_none_or(|kind| kind != "webhook-created") {
                continue;
            }
            if let Ok(EventRecord { event: Event::WebhookCreated { webhook: Ok(info) }, .. }) = decode(&value) {
                webhooks.push((info.token, info.id));
            }
        }
        Ok(webhooks)
    }

    async fn finished_before(&self, before_ms: u64) -> Result<Vec<RunId>> {
        let (runs, _) = self.runs().await?;
        Ok(runs.into_iter().filter(|r| r.status.is_terminal() && r.updated_at_ms < before_ms).map(|r| r.id).collect())
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        self.delete_run_until(id, usize::MAX).await
    }

    async fn request_cancel(&self, id: RunId) -> Result<()> {
        self.meta.insert(format!("cancel:{id}"), &[1])?;
        self.durable().await
    }

    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        Ok(self.meta.contains_key(format!("cancel:{id}"))?)
    }

    async fn clear_cancel(&self, id: RunId) -> Result<()> {
        self.meta.remove(format!("cancel:{id}"))?;
        Ok(())
    }
}

impl Inbox for SledStore {
    async fn create_hook(&self, hook: &HookRecord, now_ms: u64) -> Result<()> {
        let token = hook.token.as_str().as_bytes();
        let bytes = encode(hook)?;
        loop {
            let previous = self.hooks.get(token)?;
            if let Some(bytes) = &previous {
                let previous: HookRecord = decode(bytes)?;
                // A live token of another webhook is refused; one left by a crash for this
                // very webhook is taken over.
                let same = previous.is(hook.run_id, hook.webhook());
                if !same && !self.hook_done(&previous, now_ms)? {
                    return Err(StoreError::TokenTaken);
                }
            }
            if self.hooks.compare_and_swap(token, previous, Some(bytes.as_slice()))?.is_ok() {
                return Ok(());
            }
        }
    }

    async fn hook(&self, token: &Token) -> Result<Option<HookRecord>> {
        self.hooks.get(token.as_str().as_bytes())?.map(|v| decode(&v)).transpose()
    }

    async fn close_hook(
        &self,
        token: &Token,
        run: RunId,
        webhook: WebhookId,
        reason: NotTakenReason,
        now_ms: u64,
    ) -> Result<Vec<InboxEntry>> {
        let Some(mut hook) = self.hook(token).await? else { return Ok(Vec::new()) };
        if !hook.is(run, webhook) {
            return Ok(Vec::new());
        }
        if hook.state != HookState::Closed {
            hook.state = HookState::Closed;
            self.hooks.insert(token.as_str().as_bytes(), encode(&hook)?)?;
        }
        let channel = Channel::Webhook(webhook);
        let moved = self.move_to_not_taken(run, &channel, reason, now_ms)?;
        // An empty single-use slot is closed too: a call racing the close cannot take it.
        if hook.single_use {
            let slot = keys::call(run, &channel, keys::SLOT);
            let closed = encode(&Slot::Mark { mark: Mark::Closed })?;
            let _ = self.inbox.compare_and_swap(slot, None::<&[u8]>, Some(closed))?;
        }
        Ok(moved)
    }

    async fn deliver(
        &self,
        hook: &HookRecord,
        request: &RequestRecord,
        held: bool,
        now_ms: u64,
        written: &Written<'_>,
    ) -> Result<Delivery> {
        // The caller was checked against `hook`: the token must still be that hook's.
        let token = hook.token.as_str().as_bytes();
        let looked_at = self.hooks.get(token)?;
        let current = looked_at.as_deref().map(decode::<HookRecord>).transpose()?;
        let open = current.is_some_and(|c| c.is(hook.run_id, hook.webhook()) && c.takes_calls(now_ms));
        if !open {
            return Ok(Delivery::Gone);
        }
        let channel = Channel::Webhook(hook.webhook());
        let entry =
            sled::IVec::from(encode(&Slot::Call(InboxEntry { request: request.clone(), held, taking: false }))?);
        let key = if hook.single_use {
            // The one slot: of two racing calls (or a call and the close), one wins.
            let slot = keys::call(hook.run_id, &channel, keys::SLOT);
            if self.inbox.compare_and_swap(&slot, None::<&[u8]>, Some(&entry))?.is_err() {
                return Ok(Delivery::Gone);
            }
            slot
        } else {
            let arrival = request.arrival().map_or_else(|| self.next_arrival(), Ok)?;
            let key = keys::call(hook.run_id, &channel, arrival);
            self.inbox.insert(&key, &entry)?;
            key
        };
        // A close that came between the look above and the write may have missed this
        // call: take it back out. If the close got it first, it lists the call as
        // acknowledged, and so the caller is answered.
        let closed = closed_since(looked_at.as_deref(), self.hooks.get(token)?.as_deref(), hook, now_ms);
        if closed && self.inbox.compare_and_swap(&key, Some(entry), None::<&[u8]>)?.is_ok() {
            return Ok(Delivery::Gone);
        }
        written();
        self.durable().await?;
        Ok(Delivery::Accepted)
    }

    async fn deliver_to_trigger(&self, run: RunId, name: &TriggerName, request: &RequestRecord) -> Result<()> {
        let arrival = request.arrival().map_or_else(|| self.next_arrival(), Ok)?;
        let entry = Slot::Call(InboxEntry { request: request.clone(), held: true, taking: false });
        self.trigger_inbox.insert(keys::call(run, &Channel::Trigger(name.clone()), arrival), encode(&entry)?)?;
        self.durable().await
    }

    async fn first_arrival(&self, run: RunId, channels: &[Channel]) -> Result<Option<Channel>> {
        let mut first: Option<(u64, &Channel)> = None;
        for channel in channels {
            if let Some(call) = self.calls(run, channel).find(|c| c.as_ref().map_or(true, |c| !c.entry.taking)) {
                let arrival = call?.entry.request.arrival().unwrap_or(u64::MAX);
                if first.is_none_or(|(earliest, _)| arrival < earliest) {
                    first = Some((arrival, channel));
                }
            }
        }
        Ok(first.map(|(_, channel)| channel.clone()))
    }

    async fn claim(&self, run: RunId, channel: &Channel) -> Result<Option<Claimed>> {
        let inbox = self.inbox_of(channel);
        loop {
            let next = self.calls(run, channel).find(|c| c.as_ref().map_or(true, |c| !c.entry.taking));
            let Some(call) = next else { return Ok(None) };
            let StoredCall { key, stored, entry } = call?;
            let claimed = InboxEntry { taking: true, ..entry };
            let swapped = inbox.compare_and_swap(&key, Some(stored), Some(encode(&Slot::Call(claimed.clone()))?))?;
            // Withdrawn by its caller meanwhile: the next one.
            if swapped.is_ok() {
                let arrival = keys::arrival(&key).unwrap_or_default();
                let slot = matches!(channel, Channel::Webhook(_)) && arrival == keys::SLOT;
                return Ok(Some(Claimed { channel: channel.clone(), arrival, entry: claimed, slot }));
            }
        }
    }

    async fn taken(&self, run: RunId, claimed: &Claimed) -> Result<()> {
        self.finish_take(run, claimed)
    }

    async fn withdraw(&self, run: RunId, channel: &Channel, request: &RequestRecord, now_ms: u64) -> Result<bool> {
        let inbox = self.inbox_of(channel);
        // A single-use webhook's call is in its slot; any other under its arrival number.
        let arrival = request.arrival().unwrap_or(keys::SLOT);
        let mut found = None;
        for arrival in [keys::SLOT, arrival] {
            let key = keys::call(run, channel, arrival);
            if let Some(bytes) = inbox.get(&key)?
                && let Slot::Call(entry) = Slot::decode(&bytes)?
                && entry.request.id == request.id
            {
                found = Some((key, arrival, bytes, entry));
                break;
            }
        }
        let Some((key, arrival, bytes, entry)) = found else { return Ok(false) };
        if entry.taking {
            return Ok(false);
        }
        // The call leaves; a single-use slot is empty again, and takes a call again.
        if inbox.compare_and_swap(&key, Some(bytes), None::<&[u8]>)?.is_err() {
            return Ok(false);
        }
        self.note_not_taken(run, (arrival, &entry), NotTakenReason::TimedOut, now_ms)?;
        Ok(true)
    }

    async fn queued(&self, run: RunId) -> Result<Vec<InboxEntry>> {
        let mut queued = Vec::new();
        for tree in [&self.inbox, &self.trigger_inbox] {
            for value in tree.scan_prefix(run.bytes()).values() {
                if let Slot::Call(entry) = Slot::decode(&value?)? {
                    queued.push(entry);
                }
            }
        }
        Ok(queued)
    }

    async fn queued_load(&self, run: RunId) -> Result<(usize, u64)> {
        let (mut count, mut bytes) = (0, 0);
        for tree in [&self.inbox, &self.trigger_inbox] {
            for value in tree.scan_prefix(run.bytes()).values() {
                let value = value?;
                // Marks are a few bytes; calls are what a quota counts.
                if value.len() > 32 {
                    count += 1;
                    bytes += value.len() as u64;
                }
            }
        }
        Ok((count, bytes))
    }

    async fn has_any_request(&self, run: RunId) -> Result<bool> {
        Ok(self.queued(run).await?.iter().any(|entry| !entry.taking))
    }

    async fn not_taken(&self, run: RunId) -> Result<Vec<NotTakenRecord>> {
        self.not_taken.scan_prefix(run.bytes()).values().map(|v| decode(&v?)).collect()
    }

    async fn refuse_trigger_calls(&self, run: RunId, reason: NotTakenReason, now_ms: u64) -> Result<Vec<InboxEntry>> {
        let mut names = Vec::new();
        for key in self.trigger_inbox.scan_prefix(run.bytes()).keys() {
            if let Some(name) = keys::trigger_of(&key?)
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        let mut refused = Vec::new();
        for name in names {
            refused.extend(self.move_to_not_taken(run, &Channel::Trigger(name), reason, now_ms)?);
        }
        Ok(refused)
    }

    async fn settle_takes(&self, run: RunId) -> Result<Vec<String>> {
        let mut taken = Vec::new();
        for (tree, webhooks) in [(&self.inbox, true), (&self.trigger_inbox, false)] {
            for item in tree.scan_prefix(run.bytes()) {
                let (key, value) = item?;
                let Ok(Slot::Call(entry)) = Slot::decode(&value) else { continue };
                let id = entry.request.id.clone();
                if entry.taking && self.settle_take(tree, webhooks, &key, run, entry)? {
                    taken.push(id);
                }
            }
        }
        Ok(taken)
    }

    async fn repair_inbox(&self, now_ms: u64) -> Result<usize> {
        self.remove_unstarted_runs()?;
        let refused = self.repair(&self.inbox, true, now_ms)? + self.repair(&self.trigger_inbox, false, now_ms)?;
        self.durable().await?;
        Ok(refused)
    }

    async fn add_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId, since: u64) -> Result<()> {
        let key = keys::trigger_waiter(module, name, run);
        let _kept =
            self.trigger_waiters.compare_and_swap(key, None as Option<&[u8]>, Some(&since.to_be_bytes()[..]))?;
        Ok(())
    }

    async fn remove_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<()> {
        self.trigger_waiters.remove(keys::trigger_waiter(module, name, run))?;
        Ok(())
    }

    async fn trigger_waiters(&self, module: &ModuleName, name: &TriggerName) -> Result<Vec<(RunId, u64)>> {
        let mut waiters = Vec::new();
        for item in self.trigger_waiters.scan_prefix(keys::trigger_waiters_prefix(module, name)) {
            let (key, since) = item?;
            if let Some(run) = keys::trigger_waiter_run(&key) {
                waiters.push((be_u64(&since).unwrap_or(u64::MAX), run));
            }
        }
        waiters.sort();
        Ok(waiters.into_iter().map(|(since, run)| (run, since)).collect())
    }

    async fn claim_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<bool> {
        Ok(self.trigger_waiters.remove(keys::trigger_waiter(module, name, run))?.is_some())
    }
}

/// Whether a hook record read again after a delivery's write no longer takes its call. The
/// same bytes mean no close came (a close rewrites the record); other bytes may be a close,
/// or the same webhook's record written again by a replay after a crash, still open.
fn closed_since(looked_at: Option<&[u8]>, now: Option<&[u8]>, hook: &HookRecord, now_ms: u64) -> bool {
    if now == looked_at {
        return false;
    }
    let current = now.and_then(|bytes| decode::<HookRecord>(bytes).ok());
    !current.is_some_and(|c| c.is(hook.run_id, hook.webhook()) && c.takes_calls(now_ms))
}

/// The channel of an inbox key: of the webhooks' inbox or the named triggers'.
fn channel_at(key: &[u8], webhooks: bool) -> Option<Channel> {
    match webhooks {
        true => keys::webhook_of(key).map(Channel::Webhook),
        false => keys::trigger_of(key).map(Channel::Trigger),
    }
}

impl SledStore {
    /// An arrival number for a call that has none of its own.
    fn next_arrival(&self) -> Result<u64> {
        Ok(self.id_base + self.db.generate_id()?)
    }
}

impl Timers for SledStore {
    async fn add_timer(&self, due_ms: u64, run: RunId) -> Result<()> {
        self.timers.insert(keys::timer(due_ms, run), &[])?;
        Ok(())
    }

    async fn remove_timer(&self, due_ms: u64, run: RunId) -> Result<()> {
        self.timers.remove(keys::timer(due_ms, run))?;
        Ok(())
    }

    async fn due_timers(&self, now_ms: u64) -> Result<DueTimers> {
        let mut due = Vec::new();
        for item in self.timers.iter().keys() {
            let Some((at, run)) = keys::parse_timer(&item?) else { continue };
            if at > now_ms {
                return Ok(DueTimers { due, next_ms: Some(at) });
            }
            due.push((at, run));
        }
        Ok(DueTimers { due, next_ms: None })
    }

    async fn has_timer(&self, due_ms: u64, run: RunId) -> Result<bool> {
        Ok(self.timers.contains_key(keys::timer(due_ms, run))?)
    }
}

impl Registry for SledStore {
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.meta.get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.meta.insert(key, value.as_bytes())?;
        self.durable().await
    }

    async fn close(&self) -> Result<()> {
        self.durable().await
    }

    async fn next_id(&self) -> Result<u64> {
        self.next_arrival()
    }

    async fn module(&self, name: &ModuleName) -> Result<Option<ModuleRecord>> {
        self.modules.get(name.as_str())?.map(|v| decode(&v)).transpose()
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>> {
        self.modules.iter().values().map(|v| decode(&v?)).collect()
    }

    async fn put_module(&self, module: &ModuleRecord) -> Result<()> {
        self.modules.insert(module.name.as_str().as_bytes(), encode(module)?)?;
        self.durable().await
    }

    async fn blob(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.blobs.get(version)?.map(|v| v.to_vec()))
    }

    async fn put_blob(&self, version: &str, bytes: &[u8]) -> Result<()> {
        self.blobs.insert(version, bytes)?;
        self.durable().await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let (name, digest) = (key.name.as_str().as_bytes(), key.key_sha256.as_bytes());
        // The name first: of two keys made with one name, one wins. A name whose key is
        // not there is taken still (its key is being made, or revoked); one a crash left
        // so is freed at start-up (`free_names_without_keys`).
        if self.key_names.compare_and_swap(name, None::<&[u8]>, Some(digest))?.is_err() {
            return Err(StoreError::NameTaken);
        }
        self.api_keys.insert(digest, encode(key)?)?;
        self.durable().await
    }

    async fn api_key(&self, key_sha256: &str) -> Result<Option<ApiKeyRecord>> {
        self.api_keys.get(key_sha256.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.api_keys.iter().values().map(|v| decode(&v?)).collect()
    }

    async fn revoke_api_key(&self, name: &KeyName) -> Result<bool> {
        let Some(digest) = self.key_names.get(name.as_str().as_bytes())? else { return Ok(false) };
        // The key first: from here on it opens nothing.
        let revoked = self.api_keys.remove(&digest)?.is_some();
        // Only once a key was revoked, and only if the name still points at it: a key being
        // made under the name (its name taken, the key not yet stored) or made since keeps
        // the name, and stays revocable by it.
        if revoked {
            let _ = self.key_names.compare_and_swap(name.as_str().as_bytes(), Some(digest), None::<&[u8]>)?;
        }
        self.durable().await?;
        Ok(revoked)
    }

    async fn put_secret(&self, name: &KeyName, value: &str) -> Result<bool> {
        let created = self.secrets.insert(name.as_str().as_bytes(), value.as_bytes())?.is_none();
        self.durable().await?;
        Ok(created)
    }

    async fn secret(&self, name: &KeyName) -> Result<Option<String>> {
        Ok(self.secrets.get(name.as_str().as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn secret_names(&self) -> Result<Vec<String>> {
        self.secrets.iter().keys().map(|k| Ok(String::from_utf8_lossy(&k?).into_owned())).collect()
    }

    async fn delete_secret(&self, name: &KeyName) -> Result<bool> {
        let deleted = self.secrets.remove(name.as_str().as_bytes())?.is_some();
        self.durable().await?;
        Ok(deleted)
    }

    async fn listen_for_sample(&self, module: &ModuleName, trigger: &str) -> Result<()> {
        self.meta.insert(format!("listen:{module}:{trigger}"), &[1])?;
        self.durable().await
    }

    async fn take_listening(&self, module: &ModuleName, trigger: &str) -> Result<bool> {
        let key = format!("listen:{module}:{trigger}");
        Ok(self.meta.compare_and_swap(key, Some(&[1][..]), None as Option<&[u8]>)?.is_ok())
    }

    async fn put_sample(&self, module: &ModuleName, trigger: &str, sample: &serde_json::Value) -> Result<()> {
        self.meta.insert(format!("sample:{module}:{trigger}"), encode(sample)?)?;
        self.durable().await
    }

    async fn sample(&self, module: &ModuleName, trigger: &str) -> Result<Option<serde_json::Value>> {
        self.meta.get(format!("sample:{module}:{trigger}"))?.map(|v| decode(&v)).transpose()
    }

    async fn begin_message(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>> {
        let bytes = encode(record)?;
        loop {
            let previous = self.messages.get(key.as_bytes())?;
            if let Some(bytes) = &previous {
                let existing: IdempotencyRecord = decode(bytes)?;
                if existing.forget_at_ms > now_ms {
                    return Ok(Some(existing));
                }
            }
            if self.messages.compare_and_swap(key.as_bytes(), previous, Some(bytes.as_slice()))?.is_ok() {
                return Ok(None);
            }
        }
    }

    async fn message(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.messages.get(key.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    async fn put_message(&self, key: &str, record: &IdempotencyRecord) -> Result<()> {
        self.messages.insert(key.as_bytes(), encode(record)?)?;
        self.durable().await
    }

    async fn forget_message(&self, key: &str) -> Result<()> {
        self.messages.remove(key.as_bytes())?;
        Ok(())
    }

    async fn forget_expired_messages(&self, now_ms: u64, max_kept: usize, keep_after_ms: u64) -> Result<usize> {
        let mut forgotten = 0;
        let mut capped = Vec::new();
        for entry in self.messages.iter() {
            let (key, bytes) = entry?;
            let record: Option<IdempotencyRecord> = decode(&bytes).ok();
            match record {
                Some(record) if record.forget_at_ms > now_ms && record.capped => {
                    capped.push((record.created_at_ms, key, bytes));
                }
                Some(record) if record.forget_at_ms > now_ms => {}
                // Only if unchanged: a concurrent call may have just renewed it.
                _ => {
                    forgotten += usize::from(self.messages.compare_and_swap(&key, Some(bytes), None::<&[u8]>)?.is_ok())
                }
            }
        }
        if capped.len() > max_kept {
            capped.sort_by_key(|(created, ..)| *created);
            let excess = capped.len() - max_kept;
            for (created, key, bytes) in capped.into_iter().take(excess) {
                if created < keep_after_ms && self.messages.compare_and_swap(&key, Some(bytes), None::<&[u8]>)?.is_ok()
                {
                    forgotten += 1;
                }
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, NOW};
    use crate::store::event_record;
    use crate::store::records::{Caller, Method, RunStatus, WebhookInfo};

    /// A delivery takes its call back only if the hook record changed to one that no longer
    /// takes it, not when the same open webhook was written again (a replay after a crash).
    #[test]
    fn a_call_is_taken_back_only_if_its_webhook_closed_since_the_look() {
        let run = RunId::new();
        let json = |state: &str| {
            let hook = serde_json::json!({ "token": "t-1", "run_id": run, "number": 1, "methods": ["POST"],
                "single_use": true, "state": state, "response": { "mode": "manual", "deadline_ms": 1000 } });
            serde_json::to_vec(&hook).expect("encodes")
        };
        let open = json("open");
        let hook: HookRecord = decode(&open).expect("a hook record");
        // The same record, written again with other bytes (its fields in another order).
        let mut rewritten: serde_json::Value = serde_json::from_slice(&open).expect("json");
        rewritten["chosen_token"] = serde_json::json!(false);
        let rewritten = serde_json::to_vec(&rewritten).expect("encodes");
        assert_ne!(rewritten, open);
        assert!(!closed_since(Some(&open), Some(&open), &hook, 0), "unchanged");
        assert!(!closed_since(Some(&open), Some(&rewritten), &hook, 0), "written again, still open");
        assert!(closed_since(Some(&open), Some(&json("closed")), &hook, 0), "closed");
        assert!(closed_since(Some(&open), None, &hook, 0), "gone");
        assert!(closed_since(Some(&open), Some(b"not json"), &hook, 0), "unreadable: not known to be open");
    }

    /// Every inbox value reads back as it was written, in the same JSON serde's derived
    /// reader takes: a call (whatever its flags, headers and body) and each mark.
    #[test]
    fn an_inbox_value_reads_back_as_written() {
        let request = RequestRecord {
            id: "rq-7".into(),
            webhook: "wh-1".into(),
            method: Method::Post,
            path: "/hooks/t".into(),
            query: vec![("a".into(), "b".into())],
            headers: vec![("x-mark".into(), "taken".into())],
            data: serde_json::json!({ "mark": "taken", "held": true, "nested": [{ "taking": true }] }).into(),
            caller: Caller::ApiKey { name: "ops".into(), roles: vec!["admin".into()] },
            received_at_ms: 42,
        };
        for (held, taking) in [(false, false), (true, false), (false, true), (true, true)] {
            let entry = InboxEntry { request: request.clone(), held, taking };
            let bytes = encode(&Slot::Call(entry.clone())).expect("encoded");
            match Slot::decode(&bytes).expect("decoded") {
                Slot::Call(read) => assert_eq!(read, entry),
                Slot::Mark { .. } => panic!("a call read back as a mark"),
            }
            let derived: InboxEntry = decode(&bytes).expect("serde's own reader");
            assert_eq!(derived, entry);
        }
        for mark in [Mark::Taken, Mark::Closed] {
            let bytes = encode(&Slot::Mark { mark }).expect("encoded");
            assert!(matches!(Slot::decode(&bytes), Ok(Slot::Mark { mark: read }) if read == mark));
        }
        assert!(Slot::decode(b"{\"request\": 1}").is_err(), "neither a call nor a mark");
        assert!(Slot::decode(b"{\"mark\": \"other\"}").is_err());
    }

    /// An unreadable not-taken record (a bug or a disk could leave one) fails no note that
    /// a close, a withdrawal or start-up writes: it counts as a refused call, and the held
    /// call is still listed.
    #[test]
    fn an_unreadable_not_taken_record_counts_as_refused_and_fails_no_note() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), 8 << 20).expect("opens");
        let run = RunId::new();
        store.not_taken.insert(keys::not_taken(run, 1), b"{\"not a record\": [".as_slice()).expect("written");
        let request = RequestRecord {
            id: "rq-2".into(),
            webhook: "wh-1".into(),
            method: Method::Post,
            path: "/hooks/t".into(),
            query: Vec::new(),
            headers: Vec::new(),
            data: serde_json::json!({}).into(),
            caller: Caller::Anonymous,
            received_at_ms: 2,
        };
        let held = InboxEntry { request, held: true, taking: false };
        let noted = store.note_not_taken(run, (2, &held), NotTakenReason::RunEnded, 3).expect("noted");
        assert!(noted.is_some());
        assert_eq!(store.refused_kept(run).expect("counted"), 2);
    }

    /// A revoke that finds the name pointing at a key not stored yet (a create between its
    /// two writes) revokes nothing and leaves the name: once the create ends, the key is
    /// revocable by it. Clearing the name there would leave a live key no name reaches.
    #[tokio::test]
    async fn a_revoke_between_a_creates_two_writes_leaves_the_name_to_the_new_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), 8 << 20).expect("opens");
        let name = KeyName::parse("racing").expect("name");
        let key = ApiKeyRecord { name: name.clone(), roles: Vec::new(), key_sha256: "new".into(), created_at_ms: 0 };
        // The create's first write: the name taken for its key.
        store.key_names.insert(name.as_str(), "new").expect("name taken");
        assert!(!store.revoke_api_key(&name).await.expect("revoke"), "no key was there to revoke");
        // The create's second write.
        store.api_keys.insert("new", encode(&key).expect("encoded")).expect("key stored");
        assert!(store.revoke_api_key(&name).await.expect("revoke"), "the new key is revocable by its name");
        assert!(store.api_key("new").await.expect("read").is_none());
    }

    /// A key's name whose key is not stored yet is taken (another key under it would be
    /// one its name cannot revoke); a creation a crash cut short there leaves the name
    /// free once the server starts again.
    #[tokio::test]
    async fn a_name_whose_key_is_being_made_is_taken_and_one_a_crash_left_is_freed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), 8 << 20).expect("opens");
        let name = KeyName::parse("cut-short").expect("name");
        store.key_names.insert(name.as_str(), "being-made").expect("name taken");
        let key = ApiKeyRecord { name: name.clone(), roles: Vec::new(), key_sha256: "fresh".into(), created_at_ms: 0 };
        assert!(matches!(store.create_api_key(&key).await, Err(StoreError::NameTaken)), "taken while made");
        store.close().await.expect("closed");
        drop(store);
        let store = SledStore::open(dir.path(), 8 << 20).expect("opens again");
        store.create_api_key(&key).await.expect("the name is free again");
        let keys = store.api_keys().await.expect("listed");
        assert_eq!(keys.iter().map(|k| k.key_sha256.as_str()).collect::<Vec<_>>(), ["fresh"]);
        assert!(store.revoke_api_key(&name).await.expect("revoke"), "the new key is revocable by its name");
    }

    /// An ended run that owns something of every kind a deletion removes: its record, its
    /// log, a closed webhook whose call is listed as not taken (and whose slot keeps a
    /// mark), a call refused at a named trigger, a cancellation noted.
    async fn ended_run_owning_everything(store: &SledStore) -> RunId {
        let run = RunId::new();
        let mut record = conformance::run_record(run);
        record.status = RunStatus::Completed;
        store.create_run(&record, &conformance::started()).await.expect("created");
        let hook = conformance::hook(run, 1, &format!("t-{run}"), true);
        store.create_hook(&hook, NOW).await.expect("hook");
        let url = format!("http://h/hooks/{}", hook.token);
        let info = WebhookInfo { id: WebhookId(1), token: hook.token.clone(), url };
        let created = Event::WebhookCreated { webhook: Ok(info) };
        store.append(run, &[event_record(1, NOW, created)]).await.expect("appended");
        let call = conformance::request(store, serde_json::json!({ "paid": true })).await;
        store.deliver(&hook, &call, false, NOW, &|| {}).await.expect("delivered");
        store.close_hook(&hook.token, run, WebhookId(1), NotTakenReason::RunEnded, NOW).await.expect("closed");
        let name = TriggerName::parse("approve").expect("a name");
        let call = conformance::request(store, serde_json::json!({ "approved": true })).await;
        store.deliver_to_trigger(run, &name, &call).await.expect("delivered");
        store.refuse_trigger_calls(run, NotTakenReason::RunEnded, NOW).await.expect("refused");
        store.request_cancel(run).await.expect("noted");
        run
    }

    /// How many keys of the run's are left, in every tree a deletion removes from.
    fn keys_of(store: &SledStore, run: RunId) -> usize {
        let mut count = [&store.events, &store.inbox, &store.trigger_inbox, &store.not_taken]
            .iter()
            .map(|tree| tree.scan_prefix(run.bytes()).count())
            .sum::<usize>();
        count += usize::from(store.runs.contains_key(run.bytes()).expect("read"));
        count += usize::from(store.hooks.contains_key(format!("t-{run}")).expect("read"));
        count + usize::from(store.meta.contains_key(format!("cancel:{run}")).expect("read"))
    }

    /// A deletion cut short after any number of its removals, as by a crash, is finished
    /// by start-up's repair and the next retention sweep: nothing of the run is left.
    #[tokio::test]
    async fn a_deletion_cut_short_anywhere_is_finished_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), 8 << 20).expect("opens");
        let owned = keys_of(&store, ended_run_owning_everything(&store).await);
        assert!(owned >= 8, "the run owns something of every kind ({owned} keys)");
        for cut in 0..=owned {
            let run = ended_run_owning_everything(&store).await;
            store.delete_run_until(run, cut).await.expect("cut short");
            store.repair_inbox(NOW).await.expect("start-up");
            for found in store.finished_before(NOW + 1).await.expect("swept") {
                store.delete_run(found).await.expect("deleted");
            }
            assert_eq!(keys_of(&store, run), 0, "cut after {cut} of {owned} removals");
        }
    }
}
