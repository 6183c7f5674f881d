//! `population`: sends a synthetic population (every report marked
//! `spartakus.dev/synthetic=true`) to a gateway, dated over the past weeks, for demos such as
//! `testenv/quickstart.sh`. The gateway must run with `--backdate-synthetic` for the reports to
//! keep their dates, and the ingester with a retention that keeps them (`--retention none`).

use std::process::ExitCode;

use clap::Parser;
use systests::population::{self, Settings};

/// Sends a synthetic population of clusters (weekly reports over past weeks) to a gateway.
#[derive(Debug, Parser)]
#[command(name = "population", version, about)]
struct Args {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`
    #[arg(long, env = "SPARTAKUS_GATEWAY")]
    gateway: reqwest::Url,

    /// Clusters in the population (3,000 by default: under the statistics' default privacy budget, a value shows once about 100 clusters have it, so a smaller population shows little but `other`)
    #[arg(long, env = "SPARTAKUS_POPULATION_CLUSTERS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    clusters: u64,

    /// Weeks of weekly reports, ending now (at most 17: the gateway backdates by 120 days at most)
    #[arg(long, env = "SPARTAKUS_POPULATION_WEEKS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=17))]
    weeks: u32,

    /// Seed of every choice: the same seed sends the same reports
    #[arg(long, env = "SPARTAKUS_POPULATION_SEED", default_value_t = 1)]
    seed: u64,

    /// Reports sent at once
    #[arg(long, env = "SPARTAKUS_POPULATION_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Args = match plumbing::cli::parse() {
        Ok(args) => args,
        Err(exit) => return exit,
    };
    let settings = Settings {
        clusters: args.clusters as usize,
        weeks: args.weeks,
        seed: args.seed,
        now: jiff::Timestamp::now().as_second(),
    };
    let planned = population::plan(&settings);
    match population::send(&args.gateway, &planned, args.concurrency).await {
        Ok(sent) => {
            let day = |s: i64| {
                jiff::Timestamp::from_second(s)
                    .map(|t| t.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            };
            println!(
                "population: sent {} synthetic reports of {} clusters, from {} to {}",
                sent.reports,
                args.clusters,
                day(sent.first),
                day(sent.last)
            );
            println!("first day: {}", day(sent.first));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("population: {e}");
            ExitCode::FAILURE
        }
    }
}
