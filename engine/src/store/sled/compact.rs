//! Giving deleted records' space back to the filesystem. sled reuses the space of deleted
//! records for new ones, but never shrinks its files; so at start-up, when the files are
//! much larger than what they hold, the store is copied into fresh files that replace the
//! old ones.
//!
//! Crash safety: the copy is written to `sled.compacting` and flushed; then `sled` is
//! renamed `sled.old`, `sled.compacting` renamed `sled`, and `sled.old` removed. A start
//! after a crash at any point finishes or undoes the swap (`finish_interrupted`).

use std::path::{Path, PathBuf};

use super::{ID_BASE_META, Result, StoreError, open_waiting_for_the_lock};

/// Files smaller than this are left alone.
const WORTH_IT_BYTES: u64 = 16 << 20;

fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("sled"), dir.join("sled.compacting"), dir.join("sled.old"))
}

/// Completes or undoes a swap a crash interrupted.
pub fn finish_interrupted(dir: &Path) -> Result<()> {
    let (live, copy, old) = paths(dir);
    match (live.exists(), copy.exists(), old.exists()) {
        // Crashed between the two renames: the copy was complete before the first.
        (false, true, true) => std::fs::rename(&copy, &live)?,
        (false, false, true) => std::fs::rename(&old, &live)?,
        // Crashed while copying: the old files are still the live ones.
        (true, true, _) => std::fs::remove_dir_all(&copy)?,
        _ => {}
    }
    if live.exists() && old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Compacts when worthwhile. A compaction that fails (a full disk, above all) is finished or
/// undone exactly as after a crash at the same point, and the server starts on whole files;
/// only when even that fails is the error returned (the store must not open empty files
/// where its data was).
pub fn compact_or_carry_on(dir: &Path) -> Result<()> {
    compact_or_carry_on_with(dir, |from, to| std::fs::rename(from, to))
}

fn compact_or_carry_on_with(dir: &Path, rename: impl Fn(&Path, &Path) -> std::io::Result<()>) -> Result<()> {
    if let Err(e) = compact_if_worthwhile(dir, rename) {
        tracing::error!("compacting the store failed, going on without: {e}");
        finish_interrupted(dir)?;
    }
    Ok(())
}

/// Copies the store into fresh files when its files are more than twice what they hold.
/// sled's id counter is not a record: the copy carries on from where it stood (`ID_BASE_META`),
/// so that request ids and arrival numbers never repeat. `rename` is `std::fs::rename` but
/// in a test that makes it fail.
fn compact_if_worthwhile(dir: &Path, rename: impl Fn(&Path, &Path) -> std::io::Result<()>) -> Result<()> {
    let (live, copy, old) = paths(dir);
    let on_disk = size_of(&live);
    if on_disk < WORTH_IT_BYTES {
        return Ok(());
    }
    let source = open_waiting_for_the_lock(&sled::Config::new().path(&live))?;
    let held = held_bytes(&source)?;
    if on_disk < 2 * held + WORTH_IT_BYTES {
        return Ok(());
    }
    tracing::info!(on_disk, held, "compacting the store");
    let target = open_waiting_for_the_lock(&sled::Config::new().path(&copy))?;
    for name in source.tree_names() {
        let (from, to) = (source.open_tree(&name)?, target.open_tree(&name)?);
        for item in from.iter() {
            let (key, value) = item?;
            to.insert(key, value)?;
        }
    }
    let next_id = super::next_id_of(&source)?;
    target.open_tree("meta")?.insert(ID_BASE_META, &next_id.to_be_bytes())?;
    target.flush()?;
    drop((source, target));
    rename(&live, &old)?;
    sync_dir(dir)?;
    rename(&copy, &live)?;
    sync_dir(dir)?;
    std::fs::remove_dir_all(&old)?;
    tracing::info!(before = on_disk, after = size_of(&live), "compacted the store");
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::from)
}

/// The bytes of every key and value in the store.
fn held_bytes(db: &sled::Db) -> Result<u64> {
    let mut held = 0;
    for name in db.tree_names() {
        for item in db.open_tree(&name)?.iter() {
            let (key, value) = item?;
            held += (key.len() + value.len()) as u64;
        }
    }
    Ok(held)
}

fn size_of(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(std::result::Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => size_of(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled lets go of its files' lock only when its background flusher ends, a moment
    /// after the last handle is dropped.
    fn reopen(path: &Path) -> sled::Db {
        open_waiting_for_the_lock(&sled::Config::new().path(path)).expect("opens")
    }

    #[test]
    fn a_store_mostly_deleted_is_copied_into_smaller_files_and_keeps_what_it_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sled");
        mostly_deleted_store(&path);
        let before = size_of(&path);
        compact_if_worthwhile(dir.path(), |from, to| std::fs::rename(from, to)).expect("compacted");
        assert!(size_of(&path) < before / 4, "{} of {before}", size_of(&path));
        let db = reopen(&path);
        assert_eq!(db.open_tree("events").expect("tree").len(), 1);
    }

    #[test]
    fn ids_go_on_rising_across_a_compaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let before = {
            let db = sled::open(dir.path().join("sled")).expect("opens");
            let id = super::super::next_id_of(&db).expect("id");
            let tree = db.open_tree("pad").expect("tree");
            for n in 0..400u32 {
                tree.insert(n.to_be_bytes(), vec![7u8; 100_000]).expect("insert");
                tree.remove(n.to_be_bytes()).expect("remove");
            }
            db.flush().expect("flush");
            id
        };
        compact_if_worthwhile(dir.path(), |from, to| std::fs::rename(from, to)).expect("compacted");
        let db = reopen(&dir.path().join("sled"));
        assert!(super::super::next_id_of(&db).expect("id") > before);
    }

    #[test]
    fn a_lock_let_go_of_soon_is_waited_for_and_one_held_on_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sled");
        let held = reopen(&path);
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        drop(reopen(&path));
        letting_go.join().expect("thread");
        let _held = reopen(&path);
        let refused = open_waiting_for_the_lock(&sled::Config::new().path(&path)).expect_err("the lock is held");
        assert!(refused.to_string().contains("in use by another process"), "{refused}");
    }

    /// Files of 40 MB that hold one 100 kB record: worth compacting.
    fn mostly_deleted_store(path: &Path) {
        let db = sled::open(path).expect("opens");
        let tree = db.open_tree("events").expect("tree");
        for n in 0..400u32 {
            tree.insert(n.to_be_bytes(), vec![7u8; 100_000]).expect("insert");
        }
        for n in 1..400u32 {
            tree.remove(n.to_be_bytes()).expect("remove");
        }
        db.flush().expect("flush");
    }

    #[test]
    fn a_compaction_failing_at_any_rename_leaves_the_store_whole() {
        for failing in ["sled", "sled.compacting"] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("sled");
            mostly_deleted_store(&path);
            let rename = |from: &Path, to: &Path| {
                if from.file_name().is_some_and(|name| name == failing) {
                    return Err(std::io::Error::other("the disk is full"));
                }
                std::fs::rename(from, to)
            };
            compact_or_carry_on_with(dir.path(), rename).expect("carried on");
            let (live, copy, old) = paths(dir.path());
            assert!(live.exists() && !copy.exists() && !old.exists(), "failing at {failing}");
            let db = reopen(&path);
            let kept = db.open_tree("events").expect("tree").get(0u32.to_be_bytes()).expect("read");
            assert_eq!(kept.map(|v| v.len()), Some(100_000), "failing at {failing}: the record is there");
        }
    }

    #[test]
    fn an_interrupted_swap_is_finished_or_undone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (live, copy, old) = paths(dir.path());
        std::fs::create_dir_all(&copy).expect("copy");
        std::fs::create_dir_all(&old).expect("old");
        finish_interrupted(dir.path()).expect("finished");
        assert!(live.exists() && !copy.exists() && !old.exists());
        std::fs::create_dir_all(&copy).expect("copy");
        finish_interrupted(dir.path()).expect("undone");
        assert!(live.exists() && !copy.exists());
    }
}
