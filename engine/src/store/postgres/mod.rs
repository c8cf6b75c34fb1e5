//! The network backend: PostgreSQL. Several `latch` nodes may share a database; the one
//! that leads (`leadership`) is the only one that opens this store and drives runs.
//!
//! Every durable write is committed before it returns (concurrent commits share one WAL
//! flush). The writes the store's doc calls staged go through a second pool whose sessions
//! commit without waiting for the flush (`synchronous_commit = off`): PostgreSQL writes its
//! log in order, so the next durable commit makes them durable too, as the doc asks. Where sled orders single-record writes and repairs crashes between them, a
//! multi-record write here is one transaction; the recovery rules still hold, and cost
//! nothing. Records are the same JSON as in sled; columns beside them are what queries
//! select on. The schema is created and migrated on connect (`migrations`).

mod leadership;
mod migrations;

pub use leadership::Leadership;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::CommitLatency;
use super::codec::{decode, encode};
use super::records::{
    ApiKeyRecord, Event, EventRecord, HookRecord, HookState, IdempotencyRecord, InboxEntry, ModuleRecord,
    NotTakenReason, NotTakenRecord, RequestIdentity, RequestRecord, RunRecord, WaitOutcome,
};
use super::{
    Channel, Claimed, Delivery, DueTimers, Inbox, Registry, Result, RunLog, RunPage, RunQuery, StoreError, Timers,
    Unreadable, Written,
};
use crate::ids::{KeyName, ModuleName, RunId, Token, TriggerName, WebhookId};

/// At most this many refused calls are kept per run; more are only logged.
const REFUSED_KEPT_PER_RUN: i64 = 100;

/// Connections a node keeps open.
const POOL_SIZE: usize = 32;

/// How long a request waits for a pooled connection before it fails as unavailable.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a statement runs, and waits for a row's lock, before it fails.
const TIMEOUTS: &str = "-c statement_timeout=30s -c lock_timeout=10s";

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The database's own message says what failed; the driver's says only "db error".
        StoreError::Unavailable(match e.as_db_error() {
            Some(db) => format!("postgres {}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Sessions that commit without waiting for the WAL flush, for staged writes.
    staged: Pool,
    commits: CommitLatency,
}

/// How a channel is keyed: its kind (0 a webhook, 1 a named trigger) and its name.
fn channel_key(channel: &Channel) -> (i16, String) {
    match channel {
        Channel::Webhook(WebhookId(number)) => (0, format!("{number:010}")),
        Channel::Trigger(name) => (1, name.as_str().to_string()),
    }
}

fn channel_of(kind: i16, name: &str) -> Option<Channel> {
    match kind {
        0 => name.parse().ok().map(|n| Channel::Webhook(WebhookId(n))),
        _ => TriggerName::parse(name).ok().map(Channel::Trigger),
    }
}

/// Numbers are stored as `bigint`; a larger one (a guest may sleep until the end of time)
/// is kept as the largest.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn run_id(bytes: &[u8]) -> Option<RunId> {
    bytes.try_into().ok().map(RunId::from_bytes)
}

/// The calls the inbox query helpers select, in this column order.
const ENTRY_COLUMNS: &str = "kind, channel, arrival, held, taking, request";

/// A call read from the inbox, with where it sits.
struct QueuedCall {
    channel: Channel,
    arrival: u64,
    entry: InboxEntry,
}

fn entry_row(row: &tokio_postgres::Row) -> Result<Option<QueuedCall>> {
    let request: Vec<u8> = row.get(5);
    let Some(channel) = channel_of(row.get(0), row.get(1)) else { return Ok(None) };
    let entry = InboxEntry { request: decode(&request)?, held: row.get(3), taking: row.get(4) };
    Ok(Some(QueuedCall { channel, arrival: row.get::<_, i64>(2) as u64, entry }))
}

/// A call leaving the inbox refused: a held one is read without its data, which its
/// not-taken record does not keep (many withdrawals at once would each parse theirs).
fn refused_entry_row(row: &tokio_postgres::Row) -> Result<Option<QueuedCall>> {
    if !row.get::<_, bool>(3) {
        return entry_row(row);
    }
    let request: Vec<u8> = row.get(5);
    let Some(channel) = channel_of(row.get(0), row.get(1)) else { return Ok(None) };
    let request = decode::<RequestIdentity>(&request)?.into_request();
    let entry = InboxEntry { request, held: true, taking: row.get(4) };
    Ok(Some(QueuedCall { channel, arrival: row.get::<_, i64>(2) as u64, entry }))
}

impl PgStore {
    /// Connects to the database at `url` and brings its schema to this binary's version;
    /// a database migrated by a newer binary is refused.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        // Said outright, whatever the database or role defaults to: a 2xx follows a flush.
        // A stuck database fails a request after the timeouts instead of hanging it.
        let pool = Self::pool(&config, &format!("-c synchronous_commit=on {TIMEOUTS}"))?;
        let staged = Self::pool(&config, &format!("-c synchronous_commit=off {TIMEOUTS}"))?;
        let mut client = pool.get().await?;
        migrations::migrate(&mut client).await?;
        Ok(PgStore { pool, staged, commits: CommitLatency::default() })
    }

    /// A pool of sessions with `setting` added to the URL's own options.
    fn pool(config: &tokio_postgres::Config, setting: &str) -> Result<Pool> {
        let mut config = config.clone();
        let options = match config.get_options() {
            Some(own) => format!("{own} {setting}"),
            None => setting.to_string(),
        };
        config.options(&options);
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot make a connection pool: {e}")))
    }

    async fn client(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    /// A session for staged writes (see the module's doc).
    async fn staged(&self) -> Result<Object> {
        Ok(self.staged.get().await?)
    }

    async fn execute_staged(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.staged().await?.execute(sql, params).await?)
    }

    /// One statement, committed (synchronously) on its own.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        Ok(self.commits.time(client.execute(sql, params)).await?)
    }

    pub fn commit_latency(&self) -> &CommitLatency {
        &self.commits
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<tokio_postgres::Row>> {
        Ok(self.client().await?.query_opt(sql, params).await?)
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        Ok(self.client().await?.query(sql, params).await?)
    }

    /// A record in column 0 of one row, decoded.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>> {
        self.query_opt(sql, params).await?.map(|row| decode(row.get::<_, &[u8]>(0))).transpose()
    }
}

/// Lists a call the run will not take: an acknowledged one whole, a refused one by its
/// identity only, and at most `REFUSED_KEPT_PER_RUN` of those.
async fn note_not_taken(
    client: &impl GenericClient,
    run: RunId,
    row: &QueuedCall,
    reason: NotTakenReason,
    now_ms: u64,
) -> Result<()> {
    // Keyed by the call's own number: every single-use webhook's slot is at arrival 0.
    let not_taken_key = row.entry.request.arrival().unwrap_or(row.arrival);
    let record = if row.entry.held {
        let kept: i64 = client
            .query_one("SELECT count(*) FROM not_taken WHERE run = $1 AND NOT acknowledged", &[&run.bytes().as_slice()])
            .await?
            .get(0);
        if kept >= REFUSED_KEPT_PER_RUN {
            return Ok(());
        }
        NotTakenRecord::refused(row.entry.request.clone(), reason, now_ms)
    } else {
        NotTakenRecord { request: row.entry.request.clone(), acknowledged: true, reason, at_ms: now_ms }
    };
    client
        .execute(
            "INSERT INTO not_taken (run, arrival, acknowledged, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run, arrival) DO UPDATE SET acknowledged = $3, record = $4",
            &[&run.bytes().as_slice(), &int(not_taken_key), &record.acknowledged, &encode(&record)?],
        )
        .await?;
    Ok(())
}

/// Moves the calls left (not being taken) on a run's channels of `kind`, or on one channel,
/// to its not-taken list, in the caller's transaction; returns them.
async fn move_to_not_taken(
    client: &impl GenericClient,
    run: RunId,
    kind: i16,
    channel: Option<&str>,
    reason: NotTakenReason,
    now_ms: u64,
) -> Result<Vec<InboxEntry>> {
    let rows = client
        .query(
            &format!(
                "DELETE FROM inbox WHERE run = $1 AND kind = $2 AND ($3::text IS NULL OR channel = $3)
                 AND mark IS NULL AND NOT taking RETURNING {ENTRY_COLUMNS}"
            ),
            &[&run.bytes().as_slice(), &kind, &channel],
        )
        .await?;
    let mut rows: Vec<QueuedCall> =
        rows.iter().map(entry_row).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
    rows.sort_by_key(|row| row.arrival);
    for row in &rows {
        note_not_taken(client, run, row, reason, now_ms).await?;
    }
    Ok(rows.into_iter().map(|row| row.entry).collect())
}

/// Whether the run's log holds a request (at a wait, or as its start).
async fn in_log(client: &impl GenericClient, run: RunId, request_id: &str) -> Result<bool> {
    let rows = client
        .query(
            "SELECT record FROM events WHERE run = $1 AND kind IN ('wait-ended', 'started')",
            &[&run.bytes().as_slice()],
        )
        .await?;
    Ok(rows.iter().any(|row| match decode::<EventRecord>(row.get::<_, &[u8]>(0)) {
        Ok(EventRecord { event: Event::WaitEnded { result: WaitOutcome::Request { request }, .. }, .. }) => {
            request.id == request_id
        }
        Ok(EventRecord { event: Event::Started { trigger: Some(request), .. }, .. }) => request.id == request_id,
        _ => false,
    }))
}

/// A take cut short: finished if its call is in the run's log (true), else the call is
/// queued again.
async fn settle_take(client: &impl GenericClient, run: RunId, call: &QueuedCall) -> Result<bool> {
    let slot = matches!(call.channel, Channel::Webhook(_)) && call.arrival == 0;
    if in_log(client, run, &call.entry.request.id).await? {
        finish_take(client, run, &call.channel, call.arrival, slot).await?;
        return Ok(true);
    }
    let (kind, name) = channel_key(&call.channel);
    let (run, arrival) = (run.bytes(), int(call.arrival));
    client
        .execute(
            "UPDATE inbox SET taking = false WHERE run = $1 AND kind = $2 AND channel = $3 AND arrival = $4",
            &[&run.as_slice(), &kind, &name, &arrival],
        )
        .await?;
    Ok(false)
}

async fn finish_take(
    client: &impl GenericClient,
    run: RunId,
    channel: &Channel,
    arrival: u64,
    slot: bool,
) -> Result<()> {
    let (kind, name) = channel_key(channel);
    let (run, arrival) = (run.bytes(), int(arrival));
    let key: [&(dyn ToSql + Sync); 4] = [&run.as_slice(), &kind, &name, &arrival];
    let sql = if slot {
        "UPDATE inbox SET mark = 'taken', request = NULL, request_id = NULL, taking = false, held = false
         WHERE run = $1 AND kind = $2 AND channel = $3 AND arrival = $4"
    } else {
        "DELETE FROM inbox WHERE run = $1 AND kind = $2 AND channel = $3 AND arrival = $4"
    };
    client.execute(sql, &key).await?;
    Ok(())
}

impl RunLog for PgStore {
    async fn create_run(&self, run: &RunRecord, started: &EventRecord) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO runs (id, ended, updated_at_ms, record) VALUES ($1, $2, $3, $4)",
            &[&run.id.bytes().as_slice(), &run.status.is_terminal(), &int(run.updated_at_ms), &encode(run)?],
        )
        .await?;
        tx.execute(
            "INSERT INTO events (run, seq, kind, record) VALUES ($1, $2, 'started', $3)",
            &[&run.id.bytes().as_slice(), &int(started.seq), &encode(started)?],
        )
        .await?;
        Ok(self.commits.time(tx.commit()).await?)
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>> {
        self.record("SELECT record FROM runs WHERE id = $1", &[&id.bytes().as_slice()]).await
    }

    async fn put_run(&self, run: &RunRecord) -> Result<()> {
        self.execute_staged(
            "INSERT INTO runs (id, ended, updated_at_ms, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET ended = $2, updated_at_ms = $3, record = $4",
            &[&run.id.bytes().as_slice(), &run.status.is_terminal(), &int(run.updated_at_ms), &encode(run)?],
        )
        .await?;
        Ok(())
    }

    async fn runs(&self) -> Result<(Vec<RunRecord>, Vec<Unreadable>)> {
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        for row in self.query("SELECT id, record FROM runs ORDER BY id", &[]).await? {
            match decode::<RunRecord>(row.get::<_, &[u8]>(1)) {
                Ok(run) => out.push(run),
                Err(e) => {
                    let id: &[u8] = row.get(0);
                    let key = run_id(id).map_or_else(|| hex::encode(id), |id| id.to_string());
                    tracing::error!(run = %key, "skipping an unreadable run record: {e}");
                    unreadable.push(Unreadable { key, error: e.to_string() });
                }
            }
        }
        Ok((out, unreadable))
    }

    async fn run_page(&self, query: &RunQuery) -> Result<RunPage> {
        /// Rows read at a time: a filter may pass over many before the page is full.
        const BATCH: i64 = 500;
        let mut page = RunPage::default();
        let mut before = query.before.map(|id| id.bytes().to_vec());
        loop {
            let rows = self
                .query(
                    "SELECT id, record FROM runs WHERE ($1::bytea IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                    &[&before, &BATCH],
                )
                .await?;
            for row in &rows {
                let id: &[u8] = row.get(0);
                let name = || run_id(id).map_or_else(|| hex::encode(id), |id| id.to_string());
                if !page.take(query, name, decode(row.get::<_, &[u8]>(1))) {
                    return Ok(page);
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == BATCH => before = Some(last.get::<_, Vec<u8>>(0)),
                _ => return Ok(page),
            }
        }
    }

    async fn events(&self, id: RunId) -> Result<(Vec<EventRecord>, u64)> {
        let rows =
            self.query("SELECT record FROM events WHERE run = $1 ORDER BY seq", &[&id.bytes().as_slice()]).await?;
        let mut bytes = 0;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let record: &[u8] = row.get(0);
            bytes += record.len() as u64;
            events.push(decode(record)?);
        }
        Ok((events, bytes))
    }

    async fn readable_events(&self, id: RunId) -> Result<(Vec<EventRecord>, Vec<Unreadable>)> {
        let rows =
            self.query("SELECT seq, record FROM events WHERE run = $1 ORDER BY seq", &[&id.bytes().as_slice()]).await?;
        let (mut events, mut unreadable) = (Vec::new(), Vec::new());
        for row in rows {
            match decode(row.get::<_, &[u8]>(1)) {
                Ok(event) => events.push(event),
                Err(e) => unreadable.push(Unreadable { key: row.get::<_, i64>(0).to_string(), error: e.to_string() }),
            }
        }
        Ok((events, unreadable))
    }

    async fn append(&self, id: RunId, events: &[EventRecord]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare("INSERT INTO events (run, seq, kind, record) VALUES ($1, $2, $3, $4)").await?;
        for event in events {
            let record = encode(event)?;
            let kind = super::codec::event_type(&record).unwrap_or_default();
            tx.execute(&insert, &[&id.bytes().as_slice(), &int(event.seq), &kind, &record]).await?;
        }
        Ok(self.commits.time(tx.commit()).await?)
    }

    async fn webhooks_of(&self, id: RunId) -> Result<Vec<(Token, WebhookId)>> {
        let rows = self
            .query(
                "SELECT record FROM events WHERE run = $1 AND kind = 'webhook-created' ORDER BY seq",
                &[&id.bytes().as_slice()],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| match decode(row.get::<_, &[u8]>(0)) {
                Ok(EventRecord { event: Event::WebhookCreated { webhook: Ok(info) }, .. }) => {
                    Some((info.token, info.id))
                }
                _ => None,
            })
            .collect())
    }

    async fn finished_before(&self, before_ms: u64) -> Result<Vec<RunId>> {
        let rows = self
            .query("SELECT id FROM runs WHERE ended AND updated_at_ms < $1 ORDER BY id", &[&int(before_ms)])
            .await?;
        Ok(rows.iter().filter_map(|row| run_id(row.get(0))).collect())
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let run = id.bytes();
        for table in ["hooks", "events", "inbox", "not_taken", "cancels"] {
            tx.execute(&format!("DELETE FROM {table} WHERE run = $1"), &[&run.as_slice()]).await?;
        }
        tx.execute("DELETE FROM runs WHERE id = $1", &[&run.as_slice()]).await?;
        Ok(self.commits.time(tx.commit()).await?)
    }

    async fn request_cancel(&self, id: RunId) -> Result<()> {
        self.execute("INSERT INTO cancels (run) VALUES ($1) ON CONFLICT DO NOTHING", &[&id.bytes().as_slice()]).await?;
        Ok(())
    }

    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        Ok(self.query_opt("SELECT 1 FROM cancels WHERE run = $1", &[&id.bytes().as_slice()]).await?.is_some())
    }

    async fn clear_cancel(&self, id: RunId) -> Result<()> {
        self.execute_staged("DELETE FROM cancels WHERE run = $1", &[&id.bytes().as_slice()]).await?;
        Ok(())
    }
}

impl Inbox for PgStore {
    async fn create_hook(&self, hook: &HookRecord, now_ms: u64) -> Result<()> {
        let mut client = self.staged().await?;
        let token = hook.token.as_str();
        let run = hook.run_id.bytes();
        let (tx, row) = loop {
            let tx = client.transaction().await?;
            // Locks the token's row (or, through the insert's conflict, its absence).
            tx.execute(
                "INSERT INTO hooks (token, run, record) VALUES ($1, $2, '') ON CONFLICT DO NOTHING",
                &[&token, &run.as_slice()],
            )
            .await?;
            // A row deleted meanwhile (its run's retention ended): try again.
            if let Some(row) = tx.query_opt("SELECT record FROM hooks WHERE token = $1 FOR UPDATE", &[&token]).await? {
                break (tx, row);
            }
        };
        let previous: &[u8] = row.get(0);
        if !previous.is_empty() {
            let previous: HookRecord = decode(previous)?;
            // A live token of another webhook is refused; one left by a crash for this
            // very webhook is taken over.
            if !previous.is(hook.run_id, hook.webhook()) && !hook_done(&tx, &previous, now_ms).await? {
                return Err(StoreError::TokenTaken);
            }
        }
        tx.execute(
            "UPDATE hooks SET run = $2, record = $3 WHERE token = $1",
            &[&token, &hook.run_id.bytes().as_slice(), &encode(hook)?],
        )
        .await?;
        Ok(self.commits.time(tx.commit()).await?)
    }

    async fn hook(&self, token: &Token) -> Result<Option<HookRecord>> {
        let row = self.query_opt("SELECT record FROM hooks WHERE token = $1", &[&token.as_str()]).await?;
        match row {
            Some(row) if !row.get::<_, &[u8]>(0).is_empty() => Ok(Some(decode(row.get::<_, &[u8]>(0))?)),
            _ => Ok(None),
        }
    }

    async fn close_hook(
        &self,
        token: &Token,
        run: RunId,
        webhook: WebhookId,
        reason: NotTakenReason,
        now_ms: u64,
    ) -> Result<Vec<InboxEntry>> {
        let mut client = self.staged().await?;
        let tx = client.transaction().await?;
        let Some(row) =
            tx.query_opt("SELECT record FROM hooks WHERE token = $1 FOR UPDATE", &[&token.as_str()]).await?
        else {
            return Ok(Vec::new());
        };
        let bytes: &[u8] = row.get(0);
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        let mut hook: HookRecord = decode(bytes)?;
        if !hook.is(run, webhook) {
            return Ok(Vec::new());
        }
        if hook.state != HookState::Closed {
            hook.state = HookState::Closed;
            tx.execute("UPDATE hooks SET record = $2 WHERE token = $1", &[&token.as_str(), &encode(&hook)?]).await?;
        }
        let (kind, name) = channel_key(&Channel::Webhook(webhook));
        let moved = move_to_not_taken(&tx, run, kind, Some(&name), reason, now_ms).await?;
        // An empty single-use slot is closed too: a call racing the close cannot take it.
        if hook.single_use {
            tx.execute(
                "INSERT INTO inbox (run, kind, channel, arrival, mark) VALUES ($1, 0, $2, 0, 'closed')
                 ON CONFLICT DO NOTHING",
                &[&run.bytes().as_slice(), &name],
            )
            .await?;
        }
        self.commits.time(tx.commit()).await?;
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
        // Numbered before the transaction: it holds a pooled connection, and waiting for a
        // second one while holding it could exhaust the pool.
        let arrival = match (hook.single_use, request.arrival()) {
            (true, _) => 0,
            (false, Some(arrival)) => arrival,
            (false, None) => self.next_id().await?,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Shares the token's row lock with other callers; a close waits for this call.
        let current =
            tx.query_opt("SELECT record FROM hooks WHERE token = $1 FOR SHARE", &[&hook.token.as_str()]).await?;
        let current: Option<HookRecord> = match current {
            Some(row) if !row.get::<_, &[u8]>(0).is_empty() => Some(decode(row.get::<_, &[u8]>(0))?),
            _ => None,
        };
        if !current.is_some_and(|c| c.is(hook.run_id, hook.webhook()) && c.takes_calls(now_ms)) {
            return Ok(Delivery::Gone);
        }
        let (kind, name) = channel_key(&Channel::Webhook(hook.webhook()));
        // The one slot of a single-use webhook: of two racing calls, one wins.
        let inserted = tx
            .execute(
                "INSERT INTO inbox (run, kind, channel, arrival, request_id, held, request)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[&hook.run_id.bytes().as_slice(), &kind, &name, &int(arrival), &request.id, &held, &encode(request)?],
            )
            .await?;
        if inserted == 0 {
            return Ok(Delivery::Gone);
        }
        // Readers see the call only once it is committed, and so durable.
        self.commits.time(tx.commit()).await?;
        written();
        Ok(Delivery::Accepted)
    }

    async fn deliver_to_trigger(&self, run: RunId, name: &TriggerName, request: &RequestRecord) -> Result<()> {
        let arrival = match request.arrival() {
            Some(arrival) => arrival,
            None => self.next_id().await?,
        };
        self.execute(
            "INSERT INTO inbox (run, kind, channel, arrival, request_id, held, request)
             VALUES ($1, 1, $2, $3, $4, true, $5)",
            &[&run.bytes().as_slice(), &name.as_str(), &int(arrival), &request.id, &encode(request)?],
        )
        .await?;
        Ok(())
    }

    async fn first_arrival(&self, run: RunId, channels: &[Channel]) -> Result<Option<Channel>> {
        let mut first: Option<(u64, &Channel)> = None;
        for channel in channels {
            if let Some(row) = self.first_call(run, channel).await? {
                let arrival = row.entry.request.arrival().unwrap_or(u64::MAX);
                if first.is_none_or(|(earliest, _)| arrival < earliest) {
                    first = Some((arrival, channel));
                }
            }
        }
        Ok(first.map(|(_, channel)| channel.clone()))
    }

    async fn claim(&self, run: RunId, channel: &Channel) -> Result<Option<Claimed>> {
        let (kind, name) = channel_key(channel);
        loop {
            // The oldest call not being taken; one a concurrent withdrawal holds is waited
            // for, and skipped if it went (without the next in its place: hence the loop).
            let row = self
                .staged()
                .await?
                .query_opt(
                    &format!(
                        "UPDATE inbox SET taking = true WHERE (run, kind, channel, arrival) = (
                           SELECT run, kind, channel, arrival FROM inbox
                           WHERE run = $1 AND kind = $2 AND channel = $3 AND mark IS NULL AND NOT taking
                           ORDER BY arrival LIMIT 1 FOR UPDATE)
                         RETURNING {ENTRY_COLUMNS}"
                    ),
                    &[&run.bytes().as_slice(), &kind, &name],
                )
                .await?;
            if let Some(row) = row.as_ref().map(entry_row).transpose()?.flatten() {
                let slot = matches!(channel, Channel::Webhook(_)) && row.arrival == 0;
                return Ok(Some(Claimed { channel: channel.clone(), arrival: row.arrival, entry: row.entry, slot }));
            }
            if self.first_call(run, channel).await?.is_none() {
                return Ok(None);
            }
        }
    }

    async fn taken(&self, run: RunId, claimed: &Claimed) -> Result<()> {
        finish_take(&self.staged().await?, run, &claimed.channel, claimed.arrival, claimed.slot).await
    }

    async fn withdraw(&self, run: RunId, channel: &Channel, request: &RequestRecord, now_ms: u64) -> Result<bool> {
        let (kind, name) = channel_key(channel);
        let mut client = self.staged().await?;
        let tx = client.transaction().await?;
        // The call leaves unless it is being taken; a single-use slot is empty again.
        let row = tx
            .query_opt(
                &format!(
                    "DELETE FROM inbox WHERE run = $1 AND kind = $2 AND channel = $3 AND request_id = $4
                     AND NOT taking AND mark IS NULL RETURNING {ENTRY_COLUMNS}"
                ),
                &[&run.bytes().as_slice(), &kind, &name, &request.id],
            )
            .await?;
        let Some(row) = row.as_ref().map(refused_entry_row).transpose()?.flatten() else { return Ok(false) };
        note_not_taken(&tx, run, &row, NotTakenReason::TimedOut, now_ms).await?;
        self.commits.time(tx.commit()).await?;
        Ok(true)
    }

    async fn queued(&self, run: RunId) -> Result<Vec<InboxEntry>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM inbox WHERE run = $1 AND mark IS NULL ORDER BY kind, channel COLLATE \"C\", arrival"
                ),
                &[&run.bytes().as_slice()],
            )
            .await?;
        Ok(rows.iter().map(entry_row).collect::<Result<Vec<_>>>()?.into_iter().flatten().map(|r| r.entry).collect())
    }

    async fn queued_load(&self, run: RunId) -> Result<(usize, u64)> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT count(*), coalesce(sum(length(request)), 0)::bigint FROM inbox WHERE run = $1 AND mark IS NULL",
                &[&run.bytes().as_slice()],
            )
            .await?;
        Ok((row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as u64))
    }

    async fn has_any_request(&self, run: RunId) -> Result<bool> {
        let row = self
            .query_opt(
                "SELECT 1 FROM inbox WHERE run = $1 AND mark IS NULL AND NOT taking LIMIT 1",
                &[&run.bytes().as_slice()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn not_taken(&self, run: RunId) -> Result<Vec<NotTakenRecord>> {
        let rows = self
            .query("SELECT record FROM not_taken WHERE run = $1 ORDER BY arrival", &[&run.bytes().as_slice()])
            .await?;
        rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
    }

    async fn refuse_trigger_calls(&self, run: RunId, reason: NotTakenReason, now_ms: u64) -> Result<Vec<InboxEntry>> {
        let mut client = self.staged().await?;
        let tx = client.transaction().await?;
        let refused = move_to_not_taken(&tx, run, 1, None, reason, now_ms).await?;
        self.commits.time(tx.commit()).await?;
        Ok(refused)
    }

    async fn settle_takes(&self, run: RunId) -> Result<Vec<String>> {
        // No lock: only the run's driver, which has stopped, sets or clears `taking`. An
        // unreadable row is left to the repair at the next start.
        let client = self.staged().await?;
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM inbox WHERE run = $1 AND taking AND mark IS NULL");
        let rows = client.query(&sql, &[&run.bytes().as_slice()]).await?;
        let mut taken = Vec::new();
        for call in rows.iter().map(entry_row).filter_map(Result::ok).flatten() {
            if settle_take(&client, run, &call).await? {
                taken.push(call.entry.request.id);
            }
        }
        Ok(taken)
    }

    async fn repair_inbox(&self, now_ms: u64) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let unstarted =
            tx.execute("DELETE FROM runs r WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.run = r.id)", &[]).await?;
        if unstarted > 0 {
            tracing::info!(unstarted, "removed runs whose creation did not finish");
        }
        let rows = tx
            .query(
                // Every queued call is read: one that cannot be read is listed, not kept.
                &format!("SELECT {ENTRY_COLUMNS}, run FROM inbox WHERE mark IS NULL FOR UPDATE"),
                &[],
            )
            .await?;
        let mut refused = 0;
        for row in rows {
            let Some(run) = run_id(row.get(6)) else { continue };
            let call = match entry_row(&row) {
                Ok(Some(call)) => call,
                Ok(None) => continue,
                Err(e) => {
                    // One bad row must not stop the server from starting; it is listed.
                    tracing::error!(%run, "an unreadable call in the inbox, listed as not taken: {e}");
                    let (kind, channel, arrival): (i16, &str, i64) = (row.get(0), row.get(1), row.get(2));
                    let Some(channel) = channel_of(kind, channel) else {
                        tx.execute(
                            "DELETE FROM inbox WHERE run = $1 AND kind = $2 AND channel = $3 AND arrival = $4",
                            &[&run.bytes().as_slice(), &kind, &channel, &arrival],
                        )
                        .await?;
                        continue;
                    };
                    let number = tx.query_one("SELECT nextval('ids')", &[]).await?.get::<_, i64>(0) as u64;
                    let entry = InboxEntry::unreadable(&channel, number, now_ms);
                    let call = QueuedCall { channel, arrival: arrival as u64, entry };
                    note_not_taken(&tx, run, &call, NotTakenReason::Unreadable, now_ms).await?;
                    // A single-use webhook's slot stays used: its URL takes no other call.
                    let slot = matches!(call.channel, Channel::Webhook(_)) && call.arrival == 0;
                    finish_take(&tx, run, &call.channel, call.arrival, slot).await?;
                    continue;
                }
            };
            if !call.entry.taking && !call.entry.held {
                continue;
            }
            if call.entry.taking && (!call.entry.held || in_log(&tx, run, &call.entry.request.id).await?) {
                settle_take(&tx, run, &call).await?;
                continue;
            }
            if !call.entry.held {
                continue;
            }
            let (kind, name) = channel_key(&call.channel);
            let (run_bytes, arrival) = (run.bytes(), int(call.arrival));
            let key: [&(dyn ToSql + Sync); 4] = [&run_bytes.as_slice(), &kind, &name, &arrival];
            // Held: its caller is gone with the last process, unanswered.
            note_not_taken(&tx, run, &call, NotTakenReason::Restarted, now_ms).await?;
            tx.execute("DELETE FROM inbox WHERE run = $1 AND kind = $2 AND channel = $3 AND arrival = $4", &key)
                .await?;
            refused += 1;
        }
        self.commits.time(tx.commit()).await?;
        Ok(refused)
    }

    async fn add_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId, since: u64) -> Result<()> {
        self.execute_staged(
            "INSERT INTO trigger_waiters (module, name, run, since_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&module.as_str(), &name.as_str(), &run.bytes().as_slice(), &int(since)],
        )
        .await?;
        Ok(())
    }

    async fn remove_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<()> {
        self.claim_trigger_waiter(module, name, run).await.map(|_| ())
    }

    async fn trigger_waiters(&self, module: &ModuleName, name: &TriggerName) -> Result<Vec<(RunId, u64)>> {
        let rows = self
            .query(
                "SELECT run, since_ms FROM trigger_waiters WHERE module = $1 AND name = $2 ORDER BY since_ms, run",
                &[&module.as_str(), &name.as_str()],
            )
            .await?;
        Ok(rows.iter().filter_map(|row| Some((run_id(row.get(0))?, row.get::<_, i64>(1) as u64))).collect())
    }

    async fn claim_trigger_waiter(&self, module: &ModuleName, name: &TriggerName, run: RunId) -> Result<bool> {
        let deleted = self
            .execute(
                "DELETE FROM trigger_waiters WHERE module = $1 AND name = $2 AND run = $3",
                &[&module.as_str(), &name.as_str(), &run.bytes().as_slice()],
            )
            .await?;
        Ok(deleted == 1)
    }
}

impl PgStore {
    /// The oldest call on a channel that is not being taken.
    async fn first_call(&self, run: RunId, channel: &Channel) -> Result<Option<QueuedCall>> {
        let (kind, name) = channel_key(channel);
        let row = self
            .query_opt(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM inbox WHERE run = $1 AND kind = $2 AND channel = $3
                     AND mark IS NULL AND NOT taking ORDER BY arrival LIMIT 1"
                ),
                &[&run.bytes().as_slice(), &kind, &name],
            )
            .await?;
        Ok(row.as_ref().map(entry_row).transpose()?.flatten())
    }
}

/// Whether a token's webhook no longer takes calls, so that another run may take it over.
async fn hook_done(client: &impl GenericClient, hook: &HookRecord, now_ms: u64) -> Result<bool> {
    if !hook.takes_calls(now_ms) {
        return Ok(true);
    }
    if !hook.single_use {
        return Ok(false);
    }
    let (_, name) = channel_key(&Channel::Webhook(hook.webhook()));
    let used = client
        .query_opt(
            "SELECT 1 FROM inbox WHERE run = $1 AND kind = 0 AND channel = $2 AND arrival = 0",
            &[&hook.run_id.bytes().as_slice(), &name],
        )
        .await?;
    Ok(used.is_some())
}

impl Timers for PgStore {
    async fn add_timer(&self, due_ms: u64, run: RunId) -> Result<()> {
        self.execute_staged(
            "INSERT INTO timers (due_ms, run) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&int(due_ms), &run.bytes().as_slice()],
        )
        .await?;
        Ok(())
    }

    async fn remove_timer(&self, due_ms: u64, run: RunId) -> Result<()> {
        self.execute_staged(
            "DELETE FROM timers WHERE due_ms = $1 AND run = $2",
            &[&int(due_ms), &run.bytes().as_slice()],
        )
        .await?;
        Ok(())
    }

    async fn due_timers(&self, now_ms: u64) -> Result<DueTimers> {
        let rows = self
            .query("SELECT due_ms, run FROM timers WHERE due_ms <= $1 ORDER BY due_ms, run", &[&int(now_ms)])
            .await?;
        let due = rows.iter().filter_map(|row| Some((row.get::<_, i64>(0) as u64, run_id(row.get(1))?))).collect();
        let next = self.query_opt("SELECT min(due_ms) FROM timers WHERE due_ms > $1", &[&int(now_ms)]).await?;
        let next_ms = next.and_then(|row| row.get::<_, Option<i64>>(0)).map(|ms| ms as u64);
        Ok(DueTimers { due, next_ms })
    }

    async fn has_timer(&self, due_ms: u64, run: RunId) -> Result<bool> {
        let row = self
            .query_opt("SELECT 1 FROM timers WHERE due_ms = $1 AND run = $2", &[&int(due_ms), &run.bytes().as_slice()])
            .await?;
        Ok(row.is_some())
    }
}

impl Registry for PgStore {
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.query_opt("SELECT value FROM settings WHERE key = $1", &[&key]).await?.map(|row| row.get(0)))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }

    /// A last synchronous commit flushes the staged ones before it (see the module's doc).
    async fn close(&self) -> Result<()> {
        self.set_meta("closed-cleanly", "true").await?;
        self.staged.close();
        self.pool.close();
        Ok(())
    }

    async fn next_id(&self) -> Result<u64> {
        let row = self.client().await?.query_one("SELECT nextval('ids')", &[]).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn module(&self, name: &ModuleName) -> Result<Option<ModuleRecord>> {
        self.record("SELECT record FROM modules WHERE name = $1", &[&name.as_str()]).await
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>> {
        let rows = self.query("SELECT record FROM modules ORDER BY name COLLATE \"C\"", &[]).await?;
        rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
    }

    async fn put_module(&self, module: &ModuleRecord) -> Result<()> {
        self.execute(
            "INSERT INTO modules (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = $2",
            &[&module.name.as_str(), &encode(module)?],
        )
        .await?;
        Ok(())
    }

    async fn blob(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.query_opt("SELECT bytes FROM blobs WHERE version = $1", &[&version]).await?.map(|row| row.get(0)))
    }

    async fn put_blob(&self, version: &str, bytes: &[u8]) -> Result<()> {
        self.execute("INSERT INTO blobs (version, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&version, &bytes])
            .await?;
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let inserted = self
            .execute(
                "INSERT INTO api_keys (digest, name, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&key.key_sha256, &key.name.as_str(), &encode(key)?],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::NameTaken);
        }
        Ok(())
    }

    async fn api_key(&self, key_sha256: &str) -> Result<Option<ApiKeyRecord>> {
        self.record("SELECT record FROM api_keys WHERE digest = $1", &[&key_sha256]).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = self.query("SELECT record FROM api_keys ORDER BY digest COLLATE \"C\"", &[]).await?;
        rows.iter().map(|row| decode(row.get::<_, &[u8]>(0))).collect()
    }

    async fn revoke_api_key(&self, name: &KeyName) -> Result<bool> {
        Ok(self.execute("DELETE FROM api_keys WHERE name = $1", &[&name.as_str()]).await? == 1)
    }

    async fn put_secret(&self, name: &KeyName, value: &str) -> Result<bool> {
        // `xmax = 0` only on a row this statement inserted.
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2
                 RETURNING xmax = 0",
                &[&name.as_str(), &value.as_bytes()],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn secret(&self, name: &KeyName) -> Result<Option<String>> {
        let row = self.query_opt("SELECT value FROM secrets WHERE name = $1", &[&name.as_str()]).await?;
        Ok(row.map(|row| String::from_utf8_lossy(row.get::<_, &[u8]>(0)).into_owned()))
    }

    async fn secret_names(&self) -> Result<Vec<String>> {
        Ok(self
            .query("SELECT name FROM secrets ORDER BY name COLLATE \"C\"", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    async fn delete_secret(&self, name: &KeyName) -> Result<bool> {
        Ok(self.execute("DELETE FROM secrets WHERE name = $1", &[&name.as_str()]).await? == 1)
    }

    async fn listen_for_sample(&self, module: &ModuleName, trigger: &str) -> Result<()> {
        self.set_meta(&format!("listen:{module}:{trigger}"), "1").await
    }

    async fn take_listening(&self, module: &ModuleName, trigger: &str) -> Result<bool> {
        let key = format!("listen:{module}:{trigger}");
        Ok(self.execute_staged("DELETE FROM settings WHERE key = $1", &[&key]).await? == 1)
    }

    async fn put_sample(&self, module: &ModuleName, trigger: &str, sample: &serde_json::Value) -> Result<()> {
        self.set_meta(&format!("sample:{module}:{trigger}"), &serde_json::to_string(sample)?).await
    }

    async fn sample(&self, module: &ModuleName, trigger: &str) -> Result<Option<serde_json::Value>> {
        let text = self.meta(&format!("sample:{module}:{trigger}")).await?;
        text.map(|text| decode(text.as_bytes())).transpose()
    }

    async fn begin_message(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        now_ms: u64,
    ) -> Result<Option<IdempotencyRecord>> {
        let mut client = self.staged().await?;
        let bytes = encode(record)?;
        let row: [&(dyn ToSql + Sync); 5] =
            [&key.as_bytes(), &int(record.created_at_ms), &int(record.forget_at_ms), &bytes, &record.capped];
        loop {
            let tx = client.transaction().await?;
            let inserted = tx
                .execute(
                    "INSERT INTO messages (key, created_at_ms, forget_at_ms, record, capped)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &row,
                )
                .await?;
            if inserted == 1 {
                self.commits.time(tx.commit()).await?;
                return Ok(None);
            }
            // The note that was there may be forgotten meanwhile: then try again.
            let found =
                tx.query_opt("SELECT record FROM messages WHERE key = $1 FOR UPDATE", &[&key.as_bytes()]).await?;
            let Some(found) = found else { continue };
            let existing: IdempotencyRecord = decode(found.get::<_, &[u8]>(0))?;
            if existing.forget_at_ms > now_ms {
                return Ok(Some(existing));
            }
            // Past its time: this call is a first one again.
            tx.execute(
                "UPDATE messages SET created_at_ms = $2, forget_at_ms = $3, record = $4, capped = $5 WHERE key = $1",
                &row,
            )
            .await?;
            self.commits.time(tx.commit()).await?;
            return Ok(None);
        }
    }

    async fn message(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.record("SELECT record FROM messages WHERE key = $1", &[&key.as_bytes()]).await
    }

    async fn put_message(&self, key: &str, record: &IdempotencyRecord) -> Result<()> {
        self.execute(
            "INSERT INTO messages (key, created_at_ms, forget_at_ms, record, capped) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key) DO UPDATE SET created_at_ms = $2, forget_at_ms = $3, record = $4, capped = $5",
            &[&key.as_bytes(), &int(record.created_at_ms), &int(record.forget_at_ms), &encode(record)?, &record.capped],
        )
        .await?;
        Ok(())
    }

    async fn forget_message(&self, key: &str) -> Result<()> {
        self.execute_staged("DELETE FROM messages WHERE key = $1", &[&key.as_bytes()]).await?;
        Ok(())
    }

    async fn forget_expired_messages(&self, now_ms: u64, max_kept: usize, keep_after_ms: u64) -> Result<usize> {
        let expired = self.execute_staged("DELETE FROM messages WHERE forget_at_ms <= $1", &[&int(now_ms)]).await?;
        let live: i64 = self.staged().await?.query_one("SELECT count(*) FROM messages WHERE capped", &[]).await?.get(0);
        let excess = (live as u64).saturating_sub(max_kept as u64);
        let trimmed = if excess == 0 {
            0
        } else {
            self.execute_staged(
                "DELETE FROM messages WHERE key IN (SELECT key FROM messages WHERE capped AND created_at_ms < $1
                 ORDER BY created_at_ms LIMIT $2)",
                &[&int(keep_after_ms), &int(excess)],
            )
            .await?
        };
        Ok((expired + trimmed) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
        let url = latch_testkit::postgres_database().await;
        let first = PgStore::connect(&url).await.expect("connects and migrates");
        let id = first.next_id().await.expect("an id");
        drop(first);

        // A restart finds the schema in place, and ids go on rising.
        let second = PgStore::connect(&url).await.expect("connects again");
        assert!(second.next_id().await.expect("an id") > id);
        second.execute("INSERT INTO latch_schema (version) VALUES (99)", &[]).await.expect("a newer version");
        drop(second);
        let refused = PgStore::connect(&url).await.err().expect("refused");
        assert!(refused.to_string().contains("newer than this binary"), "{refused}");
    }

    #[tokio::test]
    async fn one_node_leads_at_a_time_and_another_takes_over_when_it_is_gone() {
        let url = latch_testkit::postgres_database().await;
        let first = Leadership::connect(&url).await.expect("connects");
        assert!(first.try_lead().await.expect("asks"), "the first node leads");
        assert!(first.try_lead().await.expect("asks"), "and goes on leading");
        let second = Leadership::connect(&url).await.expect("connects");
        assert!(!second.try_lead().await.expect("asks"), "a second node waits");
        assert_eq!(second.leader_url().await.expect("reads"), None, "no schema, no leader's URL yet");
        let _store = PgStore::connect(&url).await.expect("the leader opens the store");
        first.announce("http://10.0.0.1:8080").await.expect("announces");
        assert_eq!(second.leader_url().await.expect("reads").as_deref(), Some("http://10.0.0.1:8080"));

        let taking_over = tokio::spawn(async move { second.lead().await.map(|()| second) });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!taking_over.is_finished(), "no takeover while the first node leads");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), taking_over)
            .await
            .expect("the second node takes over within seconds")
            .expect("task")
            .expect("leads");
        assert!(second.try_lead().await.expect("asks"));
    }
}
