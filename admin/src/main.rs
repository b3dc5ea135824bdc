//! `admin`: create orgs and API keys, list, rotate and revoke keys, create the local table.
//! Configured like the functions: `TABLE_NAME`, and `DYNAMODB_ENDPOINT` for DynamoDB Local;
//! with neither it uses real AWS and the normal credential chain.

use clap::{Parser, Subcommand};
use shared::admin::{self, AdminError};
use shared::store::table::TableStream;
use shared::store::Store;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "admin",
    about = "Administer orgs and API keys of the developer ingest API."
)]
#[command(
    after_help = "Environment: TABLE_NAME (default developer-ingest), DYNAMODB_ENDPOINT (e.g. http://127.0.0.1:8000 for DynamoDB Local), AWS_REGION."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Organizations: the tenants that own API keys and all ingested data.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// API keys: org-scoped Bearer secrets for the ingest API.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The DynamoDB table.
    #[command(subcommand)]
    Table(TableCommand),
    /// The events/ fixtures' well-known key (DynamoDB Local only).
    #[command(subcommand)]
    Fixtures(FixturesCommand),
    /// The change feed.
    #[command(subcommand)]
    Changes(ChangesCommand),
}

#[derive(Subcommand)]
enum ChangesCommand {
    /// Follow the table's stream on DynamoDB Local (`make run`): every `--interval-ms`, hand
    /// its new records to the same consumer the Lambda runs, and to the publisher when
    /// `--bus` names an EventBridge bus at EVENTBRIDGE_ENDPOINT (created if missing). Runs
    /// until stopped.
    Follow {
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        #[arg(long)]
        bus: Option<String>,
    },
    /// Sweep the due timers (booking reminders and ends, lifecycle transitions) with the
    /// handler the sweeper Lambda runs: every `--interval-ms` at the current time (`make
    /// run`), or once with `--at <time>` (a chosen instant: what would fire then).
    Sweep {
        #[arg(long, default_value_t = 10_000)]
        interval_ms: u64,
        #[arg(long)]
        at: Option<String>,
        /// Its watermark's name (each name sweeps on its own).
        #[arg(long, default_value = "local")]
        name: String,
    },
}

#[derive(Subcommand)]
enum FixturesCommand {
    /// Register the org and key the events/ fixtures send, so they answer as their names
    /// say. Refused unless DYNAMODB_ENDPOINT is set: the key is published in the repository.
    Register,
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Set the org's lifecycle thresholds in days (what `lifecycle_stage` is computed
    /// with); thresholds not given keep their current value. Each from 1 to 36500, with
    /// at-risk < dormant < churned.
    SetLifecycle {
        org: String,
        #[arg(long)]
        new_days: Option<u32>,
        #[arg(long)]
        at_risk_days: Option<u32>,
        #[arg(long)]
        dormant_days: Option<u32>,
        #[arg(long)]
        churned_days: Option<u32>,
        /// Back to the defaults (7, 7, 30, 90).
        #[arg(long, conflicts_with_all = ["new_days", "at_risk_days", "dormant_days", "churned_days"])]
        default: bool,
    },
    /// Set the org's booking reminder offsets in minutes before `scheduled_at` (each a
    /// `booking.reminder_due` change), e.g. `--minutes 1440,60`; `--default` for 24 h and 1 h.
    SetReminders {
        org: String,
        #[arg(long, value_delimiter = ',', required_unless_present = "default")]
        minutes: Vec<u32>,
        #[arg(long, conflicts_with = "minutes")]
        default: bool,
    },
    /// Create an org.
    Create {
        /// Lower-case id used in every key of the org's data (a-z, 0-9, `-`, `_`).
        #[arg(long)]
        id: String,
        /// Display name, returned by `GET /api/developer/me/`.
        #[arg(long)]
        name: String,
    },
    /// List all orgs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set the requests per second of each of the org's keys that sets none itself.
    SetRateLimit {
        org: String,
        /// Requests per second, or "default" (100) to remove the org's setting.
        limit: RateLimitArg,
    },
    /// Set the requests per second of all the org's keys together (each request also
    /// counts against its key's own limit).
    SetTotalRateLimit {
        org: String,
        /// Tokens per second (most requests cost one), or "default" (4 times each key's limit).
        limit: RateLimitArg,
    },
}

/// A rate limit on the command line: a positive number, or "default".
#[derive(Clone, Copy, Debug)]
struct RateLimitArg(Option<u32>);

impl std::str::FromStr for RateLimitArg {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        if raw == "default" {
            return Ok(RateLimitArg(None));
        }
        match raw.parse::<u32>() {
            Ok(limit) if limit > 0 => Ok(RateLimitArg(Some(limit))),
            _ => Err("expected a positive number of requests per second, or \"default\"".into()),
        }
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret (shown only this once).
    Create {
        #[arg(long)]
        org: String,
        /// What the key is for, e.g. "iOS app".
        #[arg(long)]
        name: String,
        /// Create the org (named after its id) if it does not exist.
        #[arg(long)]
        create_org: bool,
        /// Print {"key", "key_id", "org_id", "prefix"} as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Environment word in the secret's prefix (dfk_<env>_...).
        #[arg(long, default_value = "live", value_parser = ["live", "test"])]
        env: String,
        /// Requests per second for this key (default: its org's, else 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit: Option<u32>,
        /// The key stops working after this long, e.g. 30m (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List an org's keys (never their secrets).
    List {
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key now; functions refuse it within 30 seconds (their key cache time).
    Revoke { key_id: String },
    /// Replace a key: a new secret with the same org and name; the old one keeps working
    /// for the grace period, then stops.
    Rotate {
        key_id: String,
        /// How long the old key keeps working, e.g. 24h, 90m, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Set a key's own requests per second ("default": back to its org's, else 100).
    /// Functions apply it within 30 seconds.
    SetRateLimit { key_id: String, limit: RateLimitArg },
    /// Exit 0 if the secret (read from stdin) is an active key, 1 if not.
    Verify,
}

#[derive(Subcommand)]
enum TableCommand {
    /// Create the table (as template.yaml defines it) if it does not exist, or add the
    /// indexes an older table lacks.
    Create,
    /// Move the records of the org-wide lists (segment, inbox, bookings) written before
    /// the lists were sharded into their GSI2 shards. Idempotent and resumable: run it
    /// after deploying, again until it moves nothing.
    MigrateShards {
        /// Only this org (default: every org).
        #[arg(long)]
        org: Option<String>,
    },
    /// Give the email aliases and messages written before erasure listed them (by owner,
    /// by contact) their index keys, so erasing a client finds them all. One pass over the
    /// table (a Scan); idempotent: run it once after deploying, again until it changes nothing.
    IndexForErasure,
}

fn describe_limit(limit: Option<u32>) -> String {
    match limit {
        Some(limit) => format!("{limit} tokens/s"),
        None => "default".to_owned(),
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

async fn run(cli: Cli) -> Result<ExitCode, AdminError> {
    let store = Store::from_env().await;
    match cli.command {
        Command::Table(TableCommand::Create) => {
            let created = admin::create_table(&store, TableStream::On).await?;
            let state = if created {
                "created"
            } else {
                "already exists (any missing index added)"
            };
            println!("table {}: {state}", store.table());
        }
        Command::Table(TableCommand::MigrateShards { org }) => {
            let done = admin::migrate_shards(&store, org.as_deref()).await?;
            let mut again = false;
            for (org, list, migrated) in done {
                again |= migrated.changed_meanwhile > 0;
                println!(
                    "{org} {list:?}: {} moved, {} changed meanwhile, {} skipped",
                    migrated.moved, migrated.changed_meanwhile, migrated.skipped
                );
            }
            if again {
                println!("some records changed while moved: run the command again");
            }
        }
        Command::Table(TableCommand::IndexForErasure) => {
            let indexed = admin::index_for_erasure(&store).await?;
            println!(
                "{} aliases and {} messages indexed, {} changed meanwhile, {} skipped",
                indexed.aliases, indexed.messages, indexed.changed_meanwhile, indexed.skipped
            );
            if indexed.changed_meanwhile > 0 {
                println!("some items changed while indexed: run the command again");
            }
        }
        Command::Changes(ChangesCommand::Follow { interval_ms, bus }) => {
            follow_changes(&store, Duration::from_millis(interval_ms), bus).await?;
        }
        Command::Changes(ChangesCommand::Sweep {
            interval_ms,
            at,
            name,
        }) => {
            sweep_timers(&store, Duration::from_millis(interval_ms), at, &name).await?;
        }
        Command::Fixtures(FixturesCommand::Register) => {
            if std::env::var_os("DYNAMODB_ENDPOINT").is_none() {
                eprintln!("admin: the fixtures' key is public: registered only in DynamoDB Local (set DYNAMODB_ENDPOINT)");
                return Ok(ExitCode::from(2));
            }
            let state = if admin::register_fixture_key(&store).await? {
                "registered"
            } else {
                "already registered"
            };
            println!(
                "fixtures key of org {} in table {}: {state}",
                admin::FIXTURE_ORG,
                store.table()
            );
        }
        Command::Orgs(OrgsCommand::Create { id, name }) => {
            let org = admin::create_org(&store, &id, &name).await?;
            println!("created org {} ({})", org.id, org.name);
        }
        Command::Orgs(OrgsCommand::SetReminders {
            org,
            minutes,
            default,
        }) => {
            let minutes = (!default).then_some(minutes);
            admin::set_org_reminders(&store, &org, minutes.clone()).await?;
            println!("org {org}: booking reminders {minutes:?} minutes before (None: 1440, 60)");
        }
        Command::Orgs(OrgsCommand::SetLifecycle {
            org,
            new_days,
            at_risk_days,
            dormant_days,
            churned_days,
            default,
        }) => {
            let (settings, updated) = if default {
                let updated = admin::set_org_lifecycle(&store, &org, None).await?;
                (Default::default(), updated)
            } else {
                let change = admin::LifecycleChange {
                    new_days,
                    at_risk_days,
                    dormant_days,
                    churned_days,
                };
                admin::change_org_lifecycle(&store, &org, change).await?
            };
            println!(
                "org {org}: lifecycle new {} / at risk {} / dormant {} / churned {} days ({updated} keys updated)",
                settings.new_days, settings.at_risk_days, settings.dormant_days, settings.churned_days
            );
        }
        Command::Orgs(OrgsCommand::SetRateLimit { org, limit }) => {
            let updated = admin::set_org_rate_limit(&store, &org, limit.0).await?;
            println!(
                "org {org}: rate limit {} ({updated} keys updated)",
                describe_limit(limit.0)
            );
        }
        Command::Orgs(OrgsCommand::SetTotalRateLimit { org, limit }) => {
            let updated = admin::set_org_total_rate_limit(&store, &org, limit.0).await?;
            println!(
                "org {org}: total rate limit {} ({updated} keys updated)",
                describe_limit(limit.0)
            );
        }
        Command::Keys(KeysCommand::SetRateLimit { key_id, limit }) => {
            admin::set_key_rate_limit(&store, &key_id, limit.0).await?;
            println!("key {key_id}: rate limit {}", describe_limit(limit.0));
        }
        Command::Orgs(OrgsCommand::List { json }) => {
            let orgs = admin::list_orgs(&store).await?;
            if json {
                print_json(&orgs);
            } else {
                println!("{:<24} {:<32} CREATED", "ID", "NAME");
                for org in orgs {
                    println!("{:<24} {:<32} {}", org.id, org.name, org.created_at);
                }
            }
        }
        Command::Keys(KeysCommand::Create {
            org,
            name,
            create_org,
            json,
            env,
            rate_limit,
            expires_in,
        }) => {
            let key =
                admin::create_key_with_limit(&store, &org, &name, create_org, &env, rate_limit)
                    .await?;
            if let Some(after) = expires_in {
                admin::expire_key_after(&store, &key.key_id, after).await?;
            }
            if json {
                print_json(&key);
            } else {
                println!(
                    "API key {} for org {} (shown only now, store it safely):\n{}",
                    key.key_id, key.org_id, key.key
                );
            }
        }
        Command::Keys(KeysCommand::List { org, json }) => {
            let keys = admin::list_keys(&store, &org).await?;
            if json {
                print_json(&keys);
            } else {
                println!(
                    "{:<18} {:<20} {:<36} {:<7} {:<26} {:<26} {:<26} EXPIRES",
                    "ID", "NAME", "PREFIX", "REQ/S", "CREATED", "LAST USED", "REVOKED"
                );
                let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                for key in keys {
                    println!(
                        "{:<18} {:<20} {:<36} {:<7} {:<26} {:<26} {:<26} {}",
                        key.key_id,
                        key.name,
                        key.prefix,
                        key.rate_limit,
                        key.created_at,
                        or_dash(&key.last_used_at),
                        or_dash(&key.revoked_at),
                        or_dash(&key.expires_at)
                    );
                }
            }
        }
        Command::Keys(KeysCommand::Revoke { key_id }) => {
            let at = admin::revoke_key(&store, &key_id).await?;
            println!(
                "revoked {key_id} at {at}; functions refuse it within {}s",
                shared::auth::KEY_CACHE_TTL.as_secs()
            );
        }
        Command::Keys(KeysCommand::Rotate {
            key_id,
            grace,
            json,
        }) => {
            let (key, old_ends) = admin::rotate_key(&store, &key_id, grace).await?;
            if json {
                print_json(
                    &serde_json::json!({ "new": key, "old_key_id": key_id, "old_key_expires_at": old_ends }),
                );
            } else {
                println!(
                    "new API key {} (shown only now):\n{}\nold key {key_id} works until {old_ends}",
                    key.key_id, key.key
                );
            }
        }
        Command::Keys(KeysCommand::Verify) => {
            let mut secret = String::new();
            std::io::stdin().read_line(&mut secret).ok();
            if !admin::verify_secret(&store, secret.trim()).await? {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn follow_changes(
    store: &Store,
    interval: Duration,
    bus: Option<String>,
) -> Result<(), AdminError> {
    use shared::changes::{poller, publisher};
    let failed = |detail: String| AdminError::Storage {
        table: store.table().to_owned(),
        detail,
    };
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").map_err(|_| {
        failed("`changes follow` reads DynamoDB Local's stream: set DYNAMODB_ENDPOINT".into())
    })?;
    admin::create_table(store, TableStream::On).await?;
    let arn = shared::store::table::stream_arn(store.client(), store.table())
        .await
        .map_err(|e| failed(format!("the table's stream: {e}")))?
        .ok_or_else(|| failed("the table has no stream".into()))?;
    let streams = poller::local_client(&endpoint);
    let events = publisher::client_from_env().await;
    if let Some(bus) = &bus {
        // Already there is fine: the bus outlives a run in the emulator.
        let _ = events.create_event_bus().name(bus).send().await;
    }
    let bus = bus.as_deref().map(|bus| (&events, bus));
    let mut stream = poller::StreamPoller::new(arn);
    println!(
        "following the stream of {} every {interval:?}",
        store.table()
    );
    loop {
        match poller::follow_once(&mut stream, &streams, store, bus).await {
            Ok(round) if round.records > 0 => println!(
                "{} records: {} changes written, {} already there{}",
                round.records,
                round.consumed.written,
                round.consumed.duplicates,
                round
                    .published
                    .map(|p| format!(", {} published", p.changes))
                    .unwrap_or_default()
            ),
            Ok(_) => {}
            Err(error) => eprintln!("admin: reading the stream: {error}"),
        }
        tokio::time::sleep(interval).await;
    }
}

async fn sweep_timers(
    store: &Store,
    interval: Duration,
    at: Option<String>,
    name: &str,
) -> Result<(), AdminError> {
    use shared::changes::timers;
    use shared::fields::Timestamp;
    let failed = |detail: String| AdminError::Storage {
        table: store.table().to_owned(),
        detail,
    };
    if let Some(at) = at {
        let now: Timestamp = at
            .parse()
            .map_err(|_| failed(format!("--at {at}: not a time")))?;
        let tally = timers::sweep(store, name, now)
            .await
            .map_err(|e| failed(format!("sweeping: {e:?}")))?;
        println!("{tally:?}");
        return Ok(());
    }
    println!("sweeping due timers every {interval:?}");
    loop {
        match timers::sweep(store, name, Timestamp::now()).await {
            Ok(tally) if tally.timers > 0 => println!("{tally:?}"),
            Ok(_) => {}
            Err(error) => eprintln!("admin: sweeping: {error:?}"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The shared store logs storage errors with their detail; shown only with RUST_LOG set,
    // so that by default an error is the one line printed below.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .without_time()
            .init();
    }
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("admin: {error}");
            ExitCode::from(2)
        }
    }
}
