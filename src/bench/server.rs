//! hookd under test: `hookd serve` in child processes on a fresh database,
//! so its memory is measured alone and a crash cannot take the bench along.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::store::Durability;

/// Where the hookd processes keep their data.
#[derive(Debug, Clone)]
pub(super) enum BenchDatabase {
    /// A fresh SQLite file in a temporary directory.
    Sqlite { durability: Durability },
    /// A fresh schema on this PostgreSQL server.
    Postgres { url: String },
}

pub(super) struct Servers {
    children: Vec<Child>,
    pub(super) addrs: Vec<String>,
    pub(super) api_key: String,
    db_args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        if let Some(schema) = self
            .db_args
            .iter()
            .skip_while(|a| *a != "--database-schema")
            .nth(1)
        {
            let _ = drop_schema(&self.db_args[1], schema);
        }
    }
}

/// Drops a bench schema through a short-lived runtime on this thread.
fn drop_schema(url: &str, schema: &str) -> Result<(), String> {
    let (url, schema) = (url.to_owned(), schema.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use sea_orm::ConnectionTrait;
            let db = sea_orm::Database::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .map_err(|e| e.to_string())?;
            let _ = db.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "cleanup thread panicked".to_owned())?
}

impl Servers {
    /// Starts `instances` hookd processes on one fresh database with `extra`
    /// serve flags, and creates a project.
    pub(super) fn start(
        database: &BenchDatabase,
        instances: usize,
        extra: &[String],
    ) -> Result<Self, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the hookd binary: {e}"))?;
        let (db_args, dir) = match database {
            BenchDatabase::Sqlite { durability } => {
                let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                (
                    sqlite_args(&dir.path().join("hookd.db"), *durability),
                    Some(dir),
                )
            }
            BenchDatabase::Postgres { url } => {
                let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
                (
                    vec![
                        "--database-url".to_owned(),
                        url.clone(),
                        "--database-schema".to_owned(),
                        schema,
                    ],
                    None,
                )
            }
        };
        let created = hookd(&exe)
            .args(["project", "create", "--name", "bench", "--json"])
            .args(&db_args)
            .output()
            .map_err(|e| format!("hookd project create: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "hookd project create: {}",
                String::from_utf8_lossy(&created.stderr).trim()
            ));
        }
        let api_key = serde_json::from_slice::<serde_json::Value>(&created.stdout)
            .ok()
            .and_then(|v| v["api_key"].as_str().map(str::to_owned))
            .ok_or("hookd project create printed no key")?;
        let mut servers = Self {
            children: Vec::new(),
            addrs: Vec::new(),
            api_key,
            db_args,
            _dir: dir,
        };
        for _ in 0..instances {
            let (child, addr) = spawn_serve(&exe, &servers.db_args, extra)?;
            servers.children.push(child);
            servers.addrs.push(addr);
        }
        Ok(servers)
    }

    /// Resident and peak resident memory of all instances together, in MiB.
    pub(super) fn memory_mb(&self) -> (f64, f64) {
        let mut rss = 0.0;
        let mut peak = 0.0;
        for child in &self.children {
            let (r, p) = proc_memory(child.id());
            rss += r;
            peak += p;
        }
        (rss, peak)
    }

    /// CPU time (user and system) all instances have used so far, in
    /// seconds: per delivery, it tells two builds apart where a shared
    /// machine's throughput swings too much to.
    pub(super) fn cpu_seconds(&self) -> f64 {
        self.children.iter().map(|c| proc_cpu_seconds(c.id())).sum()
    }
}

/// A hookd command that takes its settings from the bench's arguments
/// alone: the `HOOKD_*` variables of the bench's own environment (a
/// durability, queue limits, a data dir) would otherwise change what is
/// measured without the report saying so.
fn hookd(exe: &Path) -> Command {
    without_settings(Command::new(exe), std::env::vars_os().map(|(name, _)| name))
}

/// `command` with every `HOOKD_*` variable among `inherited` removed.
fn without_settings(mut command: Command, inherited: impl Iterator<Item = OsString>) -> Command {
    for name in inherited {
        if name.to_string_lossy().starts_with("HOOKD_") {
            command.env_remove(name);
        }
    }
    command
}

/// The flags that put `hookd` on the SQLite file at `path`.
fn sqlite_args(path: &Path, durability: Durability) -> Vec<String> {
    let url = format!("sqlite://{}", path.display());
    ["--database-url", &url, "--durability", durability.as_str()]
        .map(str::to_owned)
        .to_vec()
}

fn spawn_serve(
    exe: &Path,
    db_args: &[String],
    extra: &[String],
) -> Result<(Child, String), String> {
    let mut child = hookd(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "warn,hookd::app=info",
        ])
        // The bench's receivers run on loopback, which the SSRF guard refuses
        // unless allowed.
        .args(["--allow-network", "127.0.0.0/8"])
        .args(db_args)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("hookd serve: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"level\":\"ERROR\"") || line.contains("\"level\":\"WARN\"") {
                eprintln!("  hookd: {line}");
            }
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if entry["message"] == "serving gRPC"
                    && let Some(addr) = entry["addr"].as_str()
                {
                    return Ok((child, addr.to_owned()));
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("hookd serve did not start".into());
            }
        }
    }
}

/// (VmRSS, VmHWM) of a process in MiB, from /proc (0 where unavailable).
fn proc_memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process in seconds, from /proc (0 where unavailable).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    cpu_seconds_in_stat(&stat)
}

/// utime + stime from the text of `/proc/PID/stat`, in seconds.
fn cpu_seconds_in_stat(stat: &str) -> f64 {
    // The command name, in parentheses, may hold spaces and parentheses:
    // count the fields after its last `)`.
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11) // fields 3..=13; utime and stime are fields 14 and 15
        .take(2)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    // Linux reports these in USER_HZ, which is 100 wherever it is exposed.
    ticks / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_run_without_the_benchs_hookd_settings() {
        let inherited = ["HOOKD_DURABILITY", "PATH", "HOOKD_DATA_DIR", "MY_HOOKD_X"];
        let command = without_settings(Command::new("hookd"), inherited.iter().map(OsString::from));
        let mut changed: Vec<_> = command
            .get_envs()
            .map(|(name, value)| (name.to_string_lossy().into_owned(), value.is_some()))
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("HOOKD_DATA_DIR".to_owned(), false),
                ("HOOKD_DURABILITY".to_owned(), false)
            ]
        );
    }

    #[test]
    fn sqlite_children_get_the_benchs_durability() {
        let path = Path::new("/tmp/b/hookd.db");
        assert_eq!(
            sqlite_args(path, Durability::Relaxed),
            [
                "--database-url",
                "sqlite:///tmp/b/hookd.db",
                "--durability",
                "relaxed"
            ]
        );
        assert_eq!(sqlite_args(path, Durability::Full)[3], "full");
    }

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 37 0 0 20 0 9 0";
        assert!((cpu_seconds_in_stat(stat) - 2.87).abs() < 1e-9);
        assert_eq!(cpu_seconds_in_stat(""), 0.0);
    }
}
