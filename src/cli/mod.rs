//! What each subcommand does, once the command line has been parsed.

pub mod project;

use crate::app::{App, AppConfig, AppError};
use crate::config::{Command, ConfigError, DatabaseArgs, ServeArgs};
use crate::store::{Store, StoreError};

/// Why a command failed; printed as one line by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one command to completion. `shutdown` ends `serve`.
pub async fn run(
    command: Command,
    database: DatabaseArgs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => serve(*args, database, shutdown).await,
        Command::Migrate => {
            let store = open(&database).await?;
            eprintln!("migrations applied");
            store.close().await?;
            Ok(())
        }
        Command::Bench(args) => bench(args, &database).await,
        Command::Project { command } => {
            let store = open(&database).await?;
            let result = project::run(command, &store).await;
            store.close().await?;
            result
        }
    }
}

async fn serve(
    args: ServeArgs,
    database: DatabaseArgs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CliError> {
    let config = AppConfig {
        listen: args.listen,
        database: database.target()?,
        shutdown_grace: args.shutdown_grace,
        delivery: args.delivery.config()?,
        clock: std::sync::Arc::new(crate::system::SystemClock),
        rotation: crate::domain::secret::RotationPolicy::new(
            args.secret_grace,
            args.secret_grace_max,
        )
        .map_err(|e| CliError::Usage(format!("--secret-grace: {e}")))?,
        ping_endpoints: !args.no_ping,
        watch: args.watch()?,
    };
    let app = App::build(config).await?;
    app.run(shutdown).await?;
    Ok(())
}

async fn bench(args: crate::config::BenchArgs, database: &DatabaseArgs) -> Result<(), CliError> {
    let (postgres_url, durability) = match database.target()? {
        crate::store::DatabaseTarget::Postgres { url, .. } => (Some(url), Default::default()),
        crate::store::DatabaseTarget::Sqlite { .. } if args.instances > 1 => {
            return Err(CliError::Usage(
                "--instances above 1 needs a shared database: pass --database-url postgres://…"
                    .into(),
            ));
        }
        crate::store::DatabaseTarget::Sqlite { durability, .. } => (None, durability),
    };
    let plan = crate::bench::BenchPlan {
        durability,
        quick: args.quick,
        json: args.json,
        postgres_url,
        instances: args.instances as usize,
        rate: args.rate,
        duration: args.duration,
        only: args.only,
        watch: args.watch,
    };
    crate::bench::run(plan).await.map_err(CliError::Usage)
}

/// Connects and migrates, so every command works on a fresh data dir.
async fn open(database: &DatabaseArgs) -> Result<Store, CliError> {
    let target = database.target()?;
    let store = Store::connect(&target).await?;
    store.migrate().await?;
    Ok(store)
}
