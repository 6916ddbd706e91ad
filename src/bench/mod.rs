//! `hookd bench`: runs hookd (child processes on a fresh database) against
//! its own receiver on loopback, through the public gRPC API only, and
//! reports throughput, latency, isolation, memory and accounting next to
//! the machine's own ceiling measured in the same run.

mod client;
mod progress;
mod receiver;
mod report;
mod scenarios;
mod server;
mod store;
mod watcher;

use std::time::Duration;

use self::progress::Progress;
use self::report::{Summary, median};
use self::scenarios::Accounting;
use self::server::BenchDatabase;
use crate::store::Durability;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub quick: bool,
    pub json: Option<std::path::PathBuf>,
    /// `None`: a temporary SQLite database.
    pub postgres_url: Option<String>,
    /// How SQLite commits (ignored on PostgreSQL).
    pub durability: Durability,
    pub instances: usize,
    pub rate: u32,
    pub duration: Duration,
    /// Scenario names to run; empty means all.
    pub only: Vec<String>,
    /// Follow the deliveries of the throughput and latency scenarios with
    /// one WatchDeliveries subscriber.
    pub watch: bool,
}

impl BenchPlan {
    fn runs(&self, scenario: &str) -> bool {
        (self.only.is_empty() && scenario != "store") || self.only.iter().any(|s| s == scenario)
    }
}

struct Sizes {
    repeats: usize,
    ceiling: Duration,
    publish: u64,
    e2e: u64,
    isolation: u64,
    latency: Duration,
    backlog: Option<u64>,
}

impl Sizes {
    fn for_plan(plan: &BenchPlan) -> Self {
        if plan.quick {
            Self {
                repeats: 1,
                ceiling: Duration::from_secs(3),
                publish: 5_000,
                e2e: 20_000,
                isolation: 10_000,
                latency: plan.duration.min(Duration::from_secs(5)),
                backlog: None,
            }
        } else {
            Self {
                repeats: 3,
                ceiling: Duration::from_secs(5),
                publish: 20_000,
                e2e: 100_000,
                isolation: 100_000,
                latency: plan.duration,
                backlog: Some(1_000_000),
            }
        }
    }
}

/// Concurrency of the ceiling loop and of single publishes: hookd's
/// default per-endpoint cap, so the ceiling is measured like hookd sends.
const CONCURRENCY: usize = 64;

pub async fn run(plan: BenchPlan) -> Result<(), String> {
    let sizes = Sizes::for_plan(&plan);
    let database = match &plan.postgres_url {
        Some(url) => BenchDatabase::Postgres { url: url.clone() },
        None => BenchDatabase::Sqlite {
            durability: plan.durability,
        },
    };
    let instances = plan.instances;
    let backlog = sizes.backlog.filter(|_| plan.runs("backlog"));
    let steps = usize::from(plan.runs("ceiling"))
        + usize::from(plan.runs("publish"))
        + sizes.repeats * (usize::from(plan.runs("e2e")) + usize::from(plan.runs("fanout")))
        + usize::from(plan.runs("latency"))
        + sizes.repeats * usize::from(plan.runs("isolation"))
        + usize::from(backlog.is_some())
        + usize::from(plan.runs("store"));
    let progress = Progress::new(steps);
    let mut summary = Summary::default();
    let mut accounting = Accounting::default();

    if plan.runs("ceiling") {
        progress.begin("ceiling: plain hyper client -> receiver");
        summary.ceiling_per_s = scenarios::ceiling(CONCURRENCY, sizes.ceiling, &progress).await?;
        progress.result(&format!("{:.0} requests/s", summary.ceiling_per_s));
    }

    if plan.runs("publish") {
        progress.begin("publish: CreateEvent x64, then BatchCreateEvents");
        let ((single, batch), counted) =
            scenarios::publish(&database, instances, sizes.publish, CONCURRENCY, &progress).await?;
        accounting.add(counted);
        summary.publish_single_per_s = single;
        summary.publish_batch_per_s = batch;
        summary.publish_per_s = single.max(batch);
        progress.result(&format!("single {single:.0}/s, batch {batch:.0}/s"));
    }

    let mut e2e = Vec::new();
    let mut e2e_cpu = Vec::new();
    let mut peaks = Vec::new();
    for run in (1..=sizes.repeats).filter(|_| plan.runs("e2e")) {
        progress.begin(&format!(
            "end to end, 1 endpoint, {} deliveries (run {run})",
            sizes.e2e
        ));
        let run = scenarios::end_to_end(&database, instances, sizes.e2e, 1, plan.watch, &progress)
            .await?;
        accounting.add(run.accounting);
        progress.result(&format!(
            "{:.0} deliveries/s, peak RSS {:.1} MiB, hookd CPU {:.0} µs/delivery \
             (all acknowledged after {:.2} s, {} received by then)",
            run.rate,
            run.peak_rss_mb,
            run.cpu_us_per_delivery,
            run.published_after,
            run.received_by_then
        ));
        e2e.push(run.rate);
        e2e_cpu.push(run.cpu_us_per_delivery);
        peaks.push(run.peak_rss_mb);
    }
    summary.e2e_per_s = median(&e2e);
    summary.e2e_cpu_us = median(&e2e_cpu);
    summary.peak_rss_mb = peaks.iter().copied().fold(0.0, f64::max);
    // Both measured in this run, or the ratio means nothing.
    summary.e2e_vs_ceiling = if summary.ceiling_per_s > 0.0 {
        summary.e2e_per_s / summary.ceiling_per_s
    } else {
        0.0
    };

    let mut fanout = Vec::new();
    let mut fanout_cpu = Vec::new();
    for run in (1..=sizes.repeats).filter(|_| plan.runs("fanout")) {
        progress.begin(&format!(
            "fan-out to 10 endpoints, {} deliveries (run {run})",
            sizes.e2e
        ));
        let run = scenarios::end_to_end(&database, instances, sizes.e2e, 10, plan.watch, &progress)
            .await?;
        accounting.add(run.accounting);
        progress.result(&format!(
            "{:.0} deliveries/s, hookd CPU {:.0} µs/delivery \
             (all acknowledged after {:.2} s, {} received by then)",
            run.rate, run.cpu_us_per_delivery, run.published_after, run.received_by_then
        ));
        fanout.push(run.rate);
        fanout_cpu.push(run.cpu_us_per_delivery);
    }
    summary.fanout_e2e_per_s = median(&fanout);
    summary.fanout_cpu_us = median(&fanout_cpu);

    if plan.runs("latency") {
        progress.begin(&format!(
            "latency at {} events/s for {} s",
            plan.rate,
            sizes.latency.as_secs_f64()
        ));
        let (figures, counted) =
            scenarios::latency(&database, instances, plan.rate, sizes.latency, &progress).await?;
        accounting.add(counted);
        [
            summary.ack_p50_ms,
            summary.ack_p99_ms,
            summary.e2e_p50_ms,
            summary.e2e_p99_ms,
            summary.e2e_max_ms,
        ] = figures;
        progress.result(&format!(
            "ack p50 {:.2} ms p99 {:.2} ms; receive p50 {:.2} ms p99 {:.2} ms",
            figures[0], figures[1], figures[2], figures[3]
        ));
    }

    let mut ratios = Vec::new();
    for run in (1..=sizes.repeats).filter(|_| plan.runs("isolation")) {
        progress.begin(&format!(
            "isolation: 10 healthy endpoints alone (A) and beside a black hole (B), A B B A A B B A (run {run})"
        ));
        let ([alone, beside], counted) =
            scenarios::isolation(&database, instances, sizes.isolation, &progress).await?;
        accounting.add(counted);
        let ratio = beside / alone;
        progress.result(&format!(
            "ratio {ratio:.3} ({beside:.0} deliveries/s beside it, {alone:.0} alone)"
        ));
        ratios.push(ratio);
    }
    summary.isolation_ratio = median(&ratios);

    if let Some(deliveries) = backlog {
        progress.begin(&format!(
            "memory: a backlog of {deliveries} deliveries waiting to retry"
        ));
        let added = scenarios::backlog(&database, deliveries, &progress).await?;
        progress.result(&format!("RSS grew by {added:.1} MiB"));
        summary.backlog_added_mb = Some(added);
    }

    if plan.runs("store") {
        let (transactions, per_transaction) = if plan.quick { (50, 400) } else { (250, 400) };
        progress.begin(&format!(
            "store: {transactions} transactions of {per_transaction} publishes and results, SQLite"
        ));
        let micros =
            store::writes(transactions, per_transaction, plan.durability, &progress).await?;
        progress.result(&format!("{micros:.1} µs per delivery"));
    }

    summary.lost = accounting.lost;
    summary.duplicates = accounting.duplicates;
    summary.bad_signatures = accounting.bad_signatures;
    summary.config = serde_json::json!({
        "database": match database { BenchDatabase::Sqlite { .. } => "sqlite", BenchDatabase::Postgres { .. } => "postgres" },
        "instances": instances,
        // PostgreSQL's commits are the server's business (hookd leaves
        // `synchronous_commit` at its default, on).
        "durability": match database {
            BenchDatabase::Sqlite { durability } => durability.as_str(),
            BenchDatabase::Postgres { .. } => Durability::Full.as_str(),
        },
        "quick": plan.quick,
        "watch": plan.watch,
        "repeats": sizes.repeats,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "versions": { "hookd": env!("CARGO_PKG_VERSION") },
    });

    println!();
    print!("{}", summary.table());
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if summary.lost > 0 || summary.duplicates > 0 || summary.bad_signatures > 0 {
        return Err(format!(
            "accounting failed: {} lost, {} duplicates, {} bad signatures",
            summary.lost, summary.duplicates, summary.bad_signatures
        ));
    }
    Ok(())
}
