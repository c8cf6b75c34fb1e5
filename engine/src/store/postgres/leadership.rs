//! Which node drives the runs of a database. Several `latch` nodes may serve one database;
//! one of them, the leader, drives every run, fires every timer and repairs the inbox at
//! start-up, as a lone node would. The others accept calls and forward them to it.
//!
//! The leader's lease is a session-level advisory lock on a connection of its own: it ends
//! when that connection does, which PostgreSQL notices at once when the leader's process
//! dies (its kernel closes the socket) and after the TCP keepalive when its machine does.
//! A waiting node polls for the lock and takes over within `POLL` of it being free. A leader
//! whose lock connection ends stops at once (`lost`): another node may lead by then.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use crate::store::{Result, StoreError};

/// Any number no other program takes as an advisory lock on the database.
const LEADER_LOCK: i64 = 0x006c_6174_6368_6e6f;

/// How often a waiting node tries for the lock.
const POLL: Duration = Duration::from_millis(200);

/// How often the leader checks its lock connection is alive, and how long it may take.
const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a silent connection waits before probing its peer, and between probes.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// The `settings` key under which the leader writes the URL other nodes forward calls to.
const LEADER_URL: &str = "leader-url";

pub struct Leadership {
    client: tokio_postgres::Client,
    /// Becomes true when the lock connection ends.
    ended: watch::Receiver<bool>,
}

impl Leadership {
    /// Opens the connection that will hold the lock (it does not take it yet).
    pub async fn connect(url: &str) -> Result<Leadership> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        // Both ends notice a dead peer within seconds, not TCP's hours: the database frees
        // the lock of a leader whose machine died, and the leader learns its lease is gone.
        config.keepalives(true).keepalives_idle(KEEPALIVE).keepalives_interval(KEEPALIVE).keepalives_retries(3);
        let server_side = format!(
            "-c tcp_keepalives_idle={0} -c tcp_keepalives_interval={0} -c tcp_keepalives_count=3",
            KEEPALIVE.as_secs()
        );
        let options = match config.get_options() {
            Some(own) => format!("{own} {server_side}"),
            None => server_side,
        };
        config.options(&options);
        let (client, connection) = config.connect(NoTls).await?;
        let (end, ended) = watch::channel(false);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!("the database connection of this node's lease ended: {e}");
            }
            let _ = end.send(true);
        });
        Ok(Leadership { client, ended })
    }

    /// Takes the lease if no node holds it; true if this node leads now.
    pub async fn try_lead(&self) -> Result<bool> {
        Ok(self.client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await?.get(0))
    }

    /// Waits until this node leads.
    pub async fn lead(&self) -> Result<()> {
        while !self.try_lead().await? {
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Tells the other nodes where to forward calls: `node_url`. The schema must exist (the
    /// store was connected).
    pub async fn announce(&self, node_url: &str) -> Result<()> {
        let upsert = "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2";
        self.client.execute(upsert, &[&LEADER_URL, &node_url]).await?;
        Ok(())
    }

    /// Where the leader said it takes calls; `None` before any node has led.
    pub async fn leader_url(&self) -> Result<Option<String>> {
        let row = self.client.query_opt("SELECT value FROM settings WHERE key = $1", &[&LEADER_URL]).await;
        match row {
            Ok(row) => Ok(row.map(|row| row.get(0))),
            // No schema yet: the first leader is still migrating it.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves when the lease is lost: the lock connection ended or stopped answering.
    pub async fn lost(&self) {
        let mut ended = self.ended.clone();
        loop {
            let heartbeat = tokio::time::timeout(HEARTBEAT_TIMEOUT, self.client.simple_query("SELECT 1"));
            tokio::select! {
                _ = ended.wait_for(|ended| *ended) => return,
                answered = heartbeat => if !matches!(answered, Ok(Ok(_))) {
                    return;
                },
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }
}
