//! Command line and environment (`HOOKD_*`): what the operator can set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::{DatabaseTarget, Durability};

#[derive(Debug, Parser)]
#[command(
    name = "hookd",
    version,
    about = "gRPC-native webhook delivery service"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (migrates the database first).
    Serve(Box<ServeArgs>),
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Measure hookd on this machine: throughput, latency, isolation and
    /// memory, next to the machine's own ceiling (see docs/BENCHMARKS.md).
    Bench(BenchArgs),
    /// Manage projects (tenants) and their API keys.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
}

impl Command {
    /// The server reports what it does; one-shot commands stay quiet unless
    /// something is wrong, so their stdout and stderr are easy to script.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Self::Serve(_) => "info",
            Self::Migrate | Self::Project { .. } | Self::Bench(_) => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print its id and a new API key (shown once).
    Create {
        /// Display name of the project.
        #[arg(long)]
        name: String,
        /// Print one JSON object `{"project_id", "api_key"}` on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List projects with the prefixes of their keys.
    List {
        /// Print a JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Change a project's settings.
    Configure {
        /// The project's id (`proj_…`).
        #[arg(long)]
        project: String,
        /// Consecutive failed attempts that make one of its endpoints
        /// INACTIVE; 0 goes back to the server's --breaker-failures.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100_000))]
        breaker_failures: Option<u32>,
    },
    /// Replace a project's API keys with a new one (shown once); the old
    /// keys stop working immediately.
    RotateKey {
        /// The project's id (`proj_…`).
        #[arg(long)]
        project: String,
        /// Print one JSON object `{"project_id", "api_key"}` on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Every scenario, small: under a minute in a release build.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as one JSON object to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// hookd processes sharing the database (PostgreSQL only beyond 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub instances: u32,
    /// Events per second in the latency scenario.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Length of the latency scenario.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Run only these scenarios (repeatable), e.g. to profile one; the JSON
    /// then holds zeros for the others.
    /// `store` (the SQLite write path alone, see docs/BENCHMARKS.md) runs
    /// only when named.
    #[arg(long, value_parser = ["ceiling", "publish", "e2e", "fanout", "latency", "isolation", "backlog", "store"])]
    pub only: Vec<String>,
    /// Follow the end-to-end and fan-out deliveries with one WatchDeliveries
    /// subscriber, as a live dashboard would; its cost shows in the figures.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve gRPC on (h2c). Port 0 picks a free port.
    #[arg(long, env = "HOOKD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// How long in-flight calls may take to finish after a shutdown signal.
    #[arg(long, env = "HOOKD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// After a secret rotation, how long the old secret keeps signing unless
    /// the call says otherwise.
    #[arg(long, env = "HOOKD_SECRET_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub secret_grace: Duration,
    /// The longest grace a rotation may ask for.
    #[arg(long, env = "HOOKD_SECRET_GRACE_MAX", default_value = "7d", value_parser = parse_duration)]
    pub secret_grace_max: Duration,
    /// Do not ping new endpoints (and endpoints whose URL changes) before
    /// accepting them; by default an endpoint that does not answer 2xx is
    /// refused unless the request sets skip_ping_validation.
    #[arg(long, env = "HOOKD_NO_PING")]
    pub no_ping: bool,
    /// A WatchDeliveries/WatchMetaEvents subscriber that reads nothing for
    /// this long while updates wait is ended (RESOURCE_EXHAUSTED) and
    /// resumes from its cursor.
    #[arg(long, env = "HOOKD_WATCH_SLOW_AFTER", default_value = "10s", value_parser = parse_duration)]
    pub watch_slow_after: Duration,
    /// How often watch streams look for changes made by other hookd
    /// processes on a shared database.
    #[arg(long, env = "HOOKD_WATCH_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub watch_poll_interval: Duration,
    /// Open watch streams per project, at most.
    #[arg(long, env = "HOOKD_WATCH_MAX_PER_PROJECT", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub watch_max_per_project: u32,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

impl ServeArgs {
    pub fn watch(&self) -> Result<crate::grpc::WatchConfig, ConfigError> {
        if self.watch_slow_after.is_zero() || self.watch_poll_interval.is_zero() {
            return Err(ConfigError::Delivery(
                "--watch-slow-after and --watch-poll-interval must be positive".into(),
            ));
        }
        Ok(crate::grpc::WatchConfig {
            slow_after: self.watch_slow_after,
            poll_interval: self.watch_poll_interval,
            max_per_project: self.watch_max_per_project as usize,
            ..Default::default()
        })
    }
}

/// How events are accepted and delivered.
#[derive(Debug, Clone, Args)]
pub struct DeliveryArgs {
    /// Largest event payload accepted, in bytes.
    #[arg(long, env = "HOOKD_MAX_PAYLOAD_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    pub max_payload_bytes: u32,
    /// A repeated idempotency key within this window returns the original event.
    #[arg(long, env = "HOOKD_IDEMPOTENCY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_window: Duration,
    /// Attempts per delivery before it is given up (FAILURE).
    #[arg(long, env = "HOOKD_RETRY_MAX_ATTEMPTS", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retry_max_attempts: u32,
    /// Delay after the first failed attempt; each next one is 3 times longer.
    #[arg(long, env = "HOOKD_RETRY_INITIAL_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub retry_initial_delay: Duration,
    /// Longest delay between two attempts (also caps a receiver's Retry-After).
    #[arg(long, env = "HOOKD_RETRY_MAX_DELAY", default_value = "6h", value_parser = parse_duration)]
    pub retry_max_delay: Duration,
    /// Requests in flight to one endpoint, at most.
    #[arg(long, env = "HOOKD_MAX_IN_FLIGHT_PER_ENDPOINT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight_per_endpoint: u32,
    /// Requests in flight in total, at most.
    #[arg(long, env = "HOOKD_MAX_IN_FLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Memory for deliveries waiting to be sent, in MiB (a delivery counts
    /// its event's payload); those beyond wait in the database. Results
    /// waiting to be written may take a quarter of it more.
    #[arg(long, env = "HOOKD_QUEUE_MEMORY_MIB", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub queue_memory_mib: u32,
    /// How often the database is checked for deliveries that came due.
    #[arg(long, env = "HOOKD_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// PostgreSQL: a process silent this long is presumed dead and its
    /// deliveries are taken over by the others.
    #[arg(long, env = "HOOKD_NODE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub node_ttl: Duration,
    /// How long delivery status changes are kept for watchers that resume
    /// from a cursor.
    #[arg(long, env = "HOOKD_CHANGE_RETENTION", default_value = "1h", value_parser = parse_duration)]
    pub change_retention: Duration,
    /// Consecutive failed attempts after which an endpoint becomes INACTIVE
    /// (an HTTP 410 Gone does it at once).
    #[arg(long, env = "HOOKD_BREAKER_FAILURES", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub breaker_failures: u32,
    /// PEM file of CA certificates to trust for https receivers, besides the
    /// web PKI roots (for receivers with private certificates).
    #[arg(long, env = "HOOKD_TRUST_CA")]
    pub trust_ca: Option<PathBuf>,
    /// A network (CIDR or address) deliveries may reach although it is not
    /// on the public internet, e.g. 127.0.0.0/8 for a local receiver.
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long = "allow-network",
        env = "HOOKD_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_networks: Vec<String>,
    /// A network deliveries must never reach, public or not; wins over
    /// --allow-network. Repeatable; the variable takes a comma-separated list.
    #[arg(
        long = "block-network",
        env = "HOOKD_BLOCK_NETWORKS",
        value_delimiter = ','
    )]
    pub block_networks: Vec<String>,
}

impl DeliveryArgs {
    pub fn config(&self) -> Result<crate::delivery::DeliveryConfig, ConfigError> {
        let defaults = crate::delivery::DeliveryConfig::default();
        let retry = crate::domain::retry::RetryPolicy::with_backoff(
            self.retry_max_attempts,
            self.retry_initial_delay,
            self.retry_max_delay,
        )
        .map_err(|e| ConfigError::Delivery(format!("retry policy: {e}")))?;
        if self.poll_interval.is_zero() || self.node_ttl < Duration::from_secs(3) {
            return Err(ConfigError::Delivery(
                "--poll-interval must be positive and --node-ttl at least 3s".into(),
            ));
        }
        let extra_roots = match &self.trust_ca {
            None => Vec::new(),
            Some(path) => {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        ConfigError::Delivery(format!("--trust-ca {}: {e}", path.display()))
                    })?;
                if certs.is_empty() {
                    return Err(ConfigError::Delivery(format!(
                        "--trust-ca {}: no certificates in the file",
                        path.display()
                    )));
                }
                certs
            }
        };
        let network = crate::domain::network::NetworkPolicy::new(
            self.allow_networks.iter().map(String::as_str),
            self.block_networks.iter().map(String::as_str),
        )
        .map_err(|e| ConfigError::Delivery(format!("--allow-network/--block-network: {e}")))?;
        Ok(crate::delivery::DeliveryConfig {
            breaker_failures: self.breaker_failures,
            change_retention: self.change_retention,
            network,
            extra_roots,
            retry,
            limits: crate::delivery::Limits {
                per_endpoint_in_flight: self.max_in_flight_per_endpoint as usize,
                max_in_flight: self.max_in_flight as usize,
                max_queued_bytes: (self.queue_memory_mib as usize) << 20,
                ..defaults.limits
            },
            poll_interval: self.poll_interval,
            node_ttl: self.node_ttl,
            idempotency_window: self.idempotency_window,
            max_payload_bytes: self.max_payload_bytes as usize,
            ..defaults
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Directory holding the embedded SQLite database (created if missing).
    #[arg(
        long,
        env = "HOOKD_DATA_DIR",
        global = true,
        default_value = "./hookd-data"
    )]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL, or `sqlite://PATH`; overrides
    /// --data-dir.
    #[arg(
        long,
        env = "HOOKD_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// PostgreSQL schema to keep hookd's tables in (created if missing).
    #[arg(long, env = "HOOKD_DATABASE_SCHEMA", global = true)]
    pub database_schema: Option<String>,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "HOOKD_DATABASE_MAX_CONNECTIONS", global = true, default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,
    /// SQLite commit durability: `full` fsyncs every commit; `relaxed`
    /// survives a process crash but may lose the last commits on power loss.
    #[arg(long, env = "HOOKD_DURABILITY", global = true, value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    Full,
    Relaxed,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter: a level (`info`) or directives (`info,hookd=debug`).
    /// Default: `info` for serve, `warn` for the other commands.
    #[arg(long, env = "HOOKD_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, env = "HOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration that parses but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--database-url: {0}")]
    DatabaseUrl(String),
    #[error("--database-schema: {0}")]
    DatabaseSchema(String),
    #[error("{0}")]
    Delivery(String),
    #[error("--data-dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DatabaseArgs {
    /// Decides where the data lives; creates the data dir for SQLite.
    pub fn target(&self) -> Result<DatabaseTarget, ConfigError> {
        let durability = match self.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Relaxed => Durability::Relaxed,
        };
        let url = self
            .database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let target = match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseTarget::Postgres {
                    url: url.to_owned(),
                    schema: self.schema()?,
                    max_connections: self.database_max_connections,
                }
            }
            Some(url) if url.starts_with("sqlite:") => {
                let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() || path == ":memory:" {
                    return Err(ConfigError::DatabaseUrl(
                        "a SQLite URL must name a file (sqlite://PATH)".into(),
                    ));
                }
                let path = PathBuf::from(path);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    create_dir(parent)?;
                }
                DatabaseTarget::Sqlite { path, durability }
            }
            Some(_) => {
                return Err(ConfigError::DatabaseUrl(
                    "must start with postgres://, postgresql:// or sqlite:".into(),
                ));
            }
            None => {
                create_dir(&self.data_dir)?;
                DatabaseTarget::Sqlite {
                    path: self.data_dir.join("hookd.db"),
                    durability,
                }
            }
        };
        if matches!(target, DatabaseTarget::Sqlite { .. }) && self.database_schema.is_some() {
            return Err(ConfigError::DatabaseSchema(
                "only applies to PostgreSQL".into(),
            ));
        }
        Ok(target)
    }

    fn schema(&self) -> Result<Option<String>, ConfigError> {
        let Some(schema) = &self.database_schema else {
            return Ok(None);
        };
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(ConfigError::DatabaseSchema(
                "must be 1 to 63 lower-case letters, digits or `_`, not starting with a digit"
                    .into(),
            ));
        }
        Ok(Some(schema.clone()))
    }
}

fn create_dir(path: &std::path::Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(path).map_err(|source| ConfigError::DataDir {
        path: path.to_owned(),
        source,
    })
}

/// No duration setting makes sense beyond this.
const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// `500ms`, `10s`, `2m`, `6h`, `7d` or a bare number of seconds, at most 30
/// days.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like 500ms, 10s, 2m, 6h or 7d"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => {
            return Err(format!(
                "`{raw}` is not a duration like 500ms, 10s, 2m, 6h or 7d"
            ));
        }
    };
    if duration > MAX_DURATION {
        return Err(format!("`{raw}` is longer than 30 days"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert!(parse_duration("31d").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("307445734561825861m").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
