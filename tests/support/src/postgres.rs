//! A throwaway PostgreSQL server for tests: one per test process, started on first use from
//! Debian's binaries (installed with apt-get when missing), and a fresh database per caller so
//! that tests never see each other's tables.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

/// The superuser initdb creates. Authentication is `trust`, so URLs carry no password.
const USER: &str = "latch";

/// A connection URL (postgres://...) to a fresh, empty database on a throwaway PostgreSQL server
/// shared by this test process; each call creates a new database (CREATE DATABASE latch_<pid>_<n>).
pub async fn postgres_database() -> String {
    // The first caller starts the server. A failure is kept, not retried: every later test
    // reports the same cause instead of tripping over a half-made data dir.
    static SERVER: OnceCell<Result<u16, String>> = OnceCell::const_new();
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let port = match SERVER.get_or_init(start_server).await {
        Ok(port) => *port,
        Err(e) => panic!("throwaway PostgreSQL server: {e}"),
    };
    let name = format!("latch_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    let client = connect(port, "postgres").await.unwrap_or_else(|e| panic!("connecting to PostgreSQL: {e}"));
    let create = client.batch_execute(&format!("CREATE DATABASE {name}")).await;
    create.unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    format!("postgres://{USER}@127.0.0.1:{port}/{name}")
}

async fn connect(port: u16, database: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("postgres://{USER}@127.0.0.1:{port}/{database}");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    // The connection does the client's I/O; its errors also fail the client's calls.
    tokio::spawn(connection);
    Ok(client)
}

/// Starts the server and waits until it accepts connections; returns its port.
async fn start_server() -> Result<u16, String> {
    let spawned = tokio::task::spawn_blocking(spawn_server).await;
    let (port, log, exited) = spawned.map_err(|e| format!("starting the server panicked: {e}"))??;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let error = match connect(port, "postgres").await {
            Ok(_) => return Ok(port),
            Err(e) => e,
        };
        let why = match exited.try_recv() {
            Ok(status) => format!("exited ({status})"),
            Err(_) if Instant::now() > deadline => format!("accepts no connections after 30 s ({error})"),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let log = std::fs::read_to_string(&log).unwrap_or_else(|e| format!("(no log: {e})"));
        return Err(format!("the server on port {port} {why}; its log:\n{log}"));
    }
}

/// Installs (if need be), initialises and spawns the server: blocking work. Returns its port,
/// its log file, and a channel that says how it exited if it does.
fn spawn_server() -> Result<(u16, PathBuf, mpsc::Receiver<String>), String> {
    let bin = server_binaries()?;
    let owner = server_owner()?;
    // Under the system's temporary dir, not the target dir: the server may run as another
    // user (see `server_owner`), who must be able to reach it, and a checkout under a
    // private home (/root is 0700) is out of that user's reach.
    let root = std::env::temp_dir().join("latch-postgres");
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    // The server may run as another user (see `server_owner`), who must reach its data dir.
    let traversable = std::fs::set_permissions(&root, Permissions::from_mode(0o755));
    traversable.map_err(|e| format!("chmod {}: {e}", root.display()))?;
    remove_dirs_of_dead_processes(&root);
    let dir = root.join(std::process::id().to_string());
    // A dir named after our pid is a leftover of an earlier process that had the same pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        // Empty, so this is chown -R.
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }

    let mut initdb = Command::new(bin.join("initdb"));
    initdb.arg("-D").arg(&dir).args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"]);
    // The C locale always exists; the machine's LANG may name one that was never generated.
    initdb.arg("--locale=C");
    let output = as_owner(&mut initdb, owner, &root).output().map_err(|e| format!("running initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
    }

    let port = free_port()?;
    let log = dir.join("server.log");
    let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("duplicating the log's descriptor: {e}"))?;
    let mut postgres = Command::new(bin.join("postgres"));
    postgres.arg("-D").arg(&dir).arg("-p").arg(port.to_string());
    // TCP only: no Unix socket, whose path a long target dir could push past its limit.
    let settings = ["listen_addresses=127.0.0.1", "unix_socket_directories=", "fsync=on", "max_connections=300"];
    for setting in settings.into_iter().chain(["shared_buffers=32MB"]) {
        postgres.args(["-c", setting]);
    }
    postgres.stdin(Stdio::null()).stdout(out).stderr(err);
    as_owner(&mut postgres, owner, &root);
    // SAFETY: prctl is async-signal-safe, as code between fork and exec must be. It runs after
    // the switch of user, which would clear the setting.
    unsafe {
        postgres.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }

    // The parent-death signal (SIGQUIT: immediate shutdown) fires when the *thread* that
    // spawned the server ends, not the process. Blocking-pool threads come and go (and each
    // #[tokio::test] has a runtime of its own), so a thread of our own spawns the server and
    // waits on it for as long as the process lives.
    let (spawned_tx, spawned) = mpsc::channel();
    let (exited_tx, exited) = mpsc::channel();
    let thread = std::thread::Builder::new().name("postgres".into()).spawn(move || match postgres.spawn() {
        Ok(mut child) => {
            let _ = spawned_tx.send(Ok(()));
            let status = child.wait().map_or_else(|e| e.to_string(), |status| status.to_string());
            let _ = exited_tx.send(status);
        }
        Err(e) => {
            let _ = spawned_tx.send(Err(format!("running postgres: {e}")));
        }
    });
    thread.map_err(|e| format!("starting a thread: {e}"))?;
    spawned.recv().map_err(|e| format!("the postgres thread: {e}"))??;
    Ok((port, log, exited))
}

/// Debian's server binaries, `/usr/lib/postgresql/<version>/bin`, of the highest version;
/// installed with apt-get when there are none (a fresh CI machine has only Rust).
fn server_binaries() -> Result<PathBuf, String> {
    if let Some(bin) = installed_binaries() {
        return Ok(bin);
    }
    // Test processes may get here at once: under the lock they take turns, and those after
    // the first find the binaries in place. The index may be missing or stale: update then.
    let install = "apt-get install -y --no-install-recommends postgresql";
    let script =
        format!("ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {install} || (apt-get update && {install})");
    let status = Command::new("flock")
        .args(["/tmp/latch-apt.lock", "sh", "-c", &script])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running flock (to install PostgreSQL): {e}"))?;
    let missing = || format!("no PostgreSQL server binaries, and `{install}` failed ({status}; its output is above)");
    installed_binaries().filter(|_| status.success()).ok_or_else(missing)
}

fn installed_binaries() -> Option<PathBuf> {
    // Versions are directory names such as "15" (or "9.6" in old releases).
    let version = |bin: &PathBuf| -> Vec<u32> {
        let name = bin.parent().and_then(Path::file_name).unwrap_or_default().to_string_lossy();
        name.split('.').map(|n| n.parse().unwrap_or(0)).collect()
    };
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    let bins = versions.filter_map(Result::ok).map(|entry| entry.path().join("bin"));
    bins.filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists()).max_by_key(version)
}

/// Who runs initdb and postgres: both refuse to run as root, so as root they run as the
/// `postgres` user Debian's package creates. `None`: as ourselves.
fn server_owner() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    for line in passwd.lines() {
        // name:password:uid:gid:...
        let mut fields = line.split(':');
        if fields.next() != Some("postgres") {
            continue;
        }
        let mut ids = fields.skip(1).map(str::parse::<u32>);
        if let (Some(Ok(uid)), Some(Ok(gid))) = (ids.next(), ids.next()) {
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root, which initdb refuses, and /etc/passwd has no `postgres` user to run it as".into())
}

/// Runs `command` as `owner`, from a directory it can reach (initdb resolves paths from there).
fn as_owner<'a>(command: &'a mut Command, owner: Option<(u32, u32)>, dir: &Path) -> &'a mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command.current_dir(dir)
}

/// Removes the data dirs of test processes that are gone: their servers died with them.
fn remove_dirs_of_dead_processes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.filter_map(Result::ok) {
        let pid = entry.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok());
        if let Some(pid) = pid
            && !alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 is never delivered; kill only checks that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    // EPERM: it exists but belongs to someone else.
    found || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A port nothing listens on now. Another process could take it before the server binds it,
/// which is rare enough for tests.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("finding a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_databases_are_distinct_and_usable() {
        let urls = [postgres_database().await, postgres_database().await];
        assert_ne!(urls[0], urls[1]);
        for (x, url) in (1..).zip(&urls) {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connects");
            tokio::spawn(connection);
            // Had both URLs named one database, the second CREATE TABLE would fail.
            let setup = format!("CREATE TABLE t(x int); INSERT INTO t VALUES ({x})");
            client.batch_execute(&setup).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            let rows = client.query("SELECT x FROM t", &[]).await.expect("select");
            let xs: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
            assert_eq!(xs, [x], "{url}");
        }
    }
}
