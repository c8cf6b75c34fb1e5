//! The schema, versioned: each binary knows the migrations up to its own version, applies
//! those a database lacks, and refuses a database that a newer binary migrated.

use deadpool_postgres::Object;

use crate::store::{Result, StoreError};

/// Migration N brings the schema from version N - 1 to N.
const MIGRATIONS: &[&str] = &[include_str!("schema-1.sql"), include_str!("schema-2.sql")];

/// Any number that no other program takes as its advisory lock on the database.
const MIGRATION_LOCK: i64 = 0x006c_6174_6368;

pub async fn migrate(client: &mut Object) -> Result<()> {
    let tx = client.transaction().await?;
    // Nodes starting together migrate one after the other.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS latch_schema (version integer NOT NULL)").await?;
    let version: Option<i32> = tx.query_one("SELECT max(version) FROM latch_schema", &[]).await?.get(0);
    let version = version.unwrap_or(0) as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the database's schema is version {version}, newer than this binary's {}: run a newer latch",
            MIGRATIONS.len()
        )));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO latch_schema (version) VALUES ($1)", &[&(done as i32 + 1)]).await?;
        tracing::info!(version = done + 1, "migrated the database's schema");
    }
    Ok(tx.commit().await?)
}
