//! `importer`: loads a file of users, events, products, sales, conversations, messages or
//! bookings into the API through `POST batch/`, safe to interrupt and to run again.
//!
//! The file is read in order; each record becomes a batch item and goes to one of
//! `--concurrency` lanes, chosen by the user (or record) it belongs to, so items of one
//! record are sent in file order. A lane sends batches of `--batch-size` one after the
//! other and resends exactly the items answered 429 or 503 (and whole batches on 429, 503,
//! 502, 504 or a transport error) with exponential backoff, never sooner than Retry-After.
//! Every line up to the checkpoint is stored or refused; a re-run resumes after it and a
//! resent item changes nothing (upserts set the same values, events carry an
//! `idempotency_key`, derived from the line when it has none).
//!
//! Exit status: 0 when every line was stored, 1 when some were refused (they are in
//! `<FILE>.rejects.ndjson`), 2 when the import stopped early (bad key, storage unavailable
//! past the retries, unreadable file); run it again to resume.

mod client;
mod input;
mod items;
mod progress;
mod state;

use clap::Parser;
use client::{Answer, Client};
use input::{Format, Refusal};
use items::{Item, ItemBuilder, ObjectType};
use serde_json::Value;
use state::{Checkpoint, Rejects};
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The API's limit is 1 MiB per batch; items are added while the JSON stays under this.
const MAX_BATCH_JSON_BYTES: usize = 900 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Import NDJSON or CSV into the developer ingest API through POST batch/."
)]
struct Args {
    /// NDJSON (one JSON object per line) or CSV (`.csv`: a header row of field names,
    /// dotted for nested fields such as `buyer.email`).
    file: PathBuf,
    /// The object type of every line; without it each NDJSON line names its `type`
    /// (`user`, `event`, ...; a product's own type is then `product_type`).
    #[arg(long = "type", value_enum)]
    kind: Option<ObjectType>,
    /// Default: CSV for `.csv` files, NDJSON otherwise.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The API's base URL (what precedes `/api/developer/`).
    #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:9000")]
    url: String,
    /// The API key (`dfk_...`); or --api-key-file.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long, conflicts_with = "api_key")]
    api_key_file: Option<PathBuf>,
    /// Items per request (the API takes up to 500).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
    batch_size: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Send bodies uncompressed (by default they are gzipped).
    #[arg(long)]
    no_gzip: bool,
    /// Attempts per item before the import stops (a re-run resumes).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Start from the first line even if a checkpoint says otherwise.
    #[arg(long)]
    restart: bool,
    #[arg(long, value_enum, default_value_t = progress::Mode::Auto)]
    progress: progress::Mode,
}

#[derive(Default)]
struct Counts {
    created: AtomicU64,
    updated: AtomicU64,
    replayed: AtomicU64,
    refused: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Counts {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn stored(&self) -> u64 {
        Self::get(&self.created) + Self::get(&self.updated) + Self::get(&self.replayed)
    }

    fn message(&self) -> String {
        format!(
            "{} stored, {} refused",
            self.stored(),
            Self::get(&self.refused)
        )
    }
}

/// Lines sent and not yet answered; everything before the first of them is done.
#[derive(Default)]
struct Tracker {
    in_flight: BTreeSet<u64>,
    read_through: u64,
    saved: u64,
}

impl Tracker {
    fn done_through(&self) -> u64 {
        match self.in_flight.first() {
            Some(first) => first - 1,
            None => self.read_through,
        }
    }
}

/// Spreads the key's per-second budget over the lanes (a token bucket at the key's rate):
/// without it, lanes would take turns at 429s.
#[derive(Default)]
struct Pacer {
    bucket: Mutex<Option<(f64, Instant)>>,
}

impl Pacer {
    /// Waits until `items` tokens are there at `rate` per second (at most one second's worth).
    fn take(&self, items: usize, rate: Option<u32>) {
        let Some(rate) = rate.map(f64::from) else {
            return;
        };
        let wanted = (items as f64).min(rate);
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().expect("pacer lock");
                let (tokens, at) = bucket.get_or_insert((rate, Instant::now()));
                *tokens = (*tokens + at.elapsed().as_secs_f64() * rate).min(rate);
                *at = Instant::now();
                if *tokens >= wanted {
                    *tokens -= wanted;
                    return;
                }
                Duration::from_secs_f64((wanted - *tokens) / rate)
            };
            std::thread::sleep(wait);
        }
    }
}

struct Import {
    client: Client,
    pacer: Pacer,
    checkpoint: Checkpoint,
    rejects: Rejects,
    tracker: Mutex<Tracker>,
    counts: Counts,
    progress: progress::Progress,
    batch_size: usize,
    max_attempts: u32,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
}

impl Import {
    fn stop_with(&self, reason: String) {
        self.fatal.lock().expect("fatal lock").get_or_insert(reason);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn refuse(&self, line: u64, refusal: &Refusal) {
        if let Err(error) = self.rejects.write(line, refusal) {
            self.stop_with(format!(
                "writing {}: {error}",
                self.rejects.path().display()
            ));
        }
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Records lines as finished and moves the checkpoint forward if it can.
    fn finished(&self, lines: impl IntoIterator<Item = u64>, read_through: Option<u64>) {
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for line in lines {
            tracker.in_flight.remove(&line);
        }
        if let Some(line) = read_through {
            tracker.read_through = line;
        }
        let done = tracker.done_through();
        if done > tracker.saved {
            if let Err(error) = self.checkpoint.save(done) {
                self.stop_with(format!(
                    "writing {}: {error}",
                    self.checkpoint.path().display()
                ));
            }
            tracker.saved = done;
        }
        drop(tracker);
        self.progress.update(done, &self.counts.message());
    }

    fn record_result(&self, item: &Item, result: &Value) -> bool {
        let status = result["status"].as_u64().unwrap_or(0);
        let counter = match status {
            200 => &self.counts.updated,
            201 if result["replayed"] == true => &self.counts.replayed,
            201 => &self.counts.created,
            429 | 503 => return false,
            _ => {
                let error = &result["error"];
                let refusal = Refusal {
                    code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                    param: error["param"].as_str().map(str::to_owned),
                    message: error["message"].as_str().unwrap_or_default().to_owned(),
                };
                self.refuse(item.line, &refusal);
                return true;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Sends one batch until every item is stored or refused: resends what is answered
    /// 429/503 after a backoff, splits a batch the API finds too large.
    fn send(&self, batch: Vec<Item>) {
        let mut queue = VecDeque::from([batch]);
        while let Some(mut pending) = queue.pop_front() {
            let mut attempts = 0;
            loop {
                if self.stopped() {
                    return;
                }
                let bodies: Vec<Value> = pending.iter().map(|item| item.json.clone()).collect();
                self.pacer.take(bodies.len(), self.client.rate_limit());
                self.counts.requests.fetch_add(1, Ordering::Relaxed);
                // Rate limiting is the key's pace, not a failure: it uses up no attempts.
                let (reason, retry_after, rate_limited) = match self.client.send(&bodies) {
                    Answer::Results {
                        results,
                        retry_after,
                    } => {
                        let mut finished = Vec::new();
                        let mut again = Vec::new();
                        for (item, result) in pending.into_iter().zip(&results) {
                            if self.record_result(&item, result) {
                                finished.push(item.line);
                            } else {
                                again.push(item);
                            }
                        }
                        self.finished(finished, None);
                        if again.is_empty() {
                            break;
                        }
                        let limited = results.iter().filter(|r| r["status"] == 429).count();
                        let rate_limited_only = limited == again.len();
                        pending = again;
                        let reason = format!("{} items answered 429/503", pending.len());
                        (reason, retry_after, rate_limited_only)
                    }
                    Answer::Retry {
                        reason,
                        retry_after,
                    } => {
                        let rate_limited = reason.starts_with("429");
                        (reason, retry_after, rate_limited)
                    }
                    Answer::TooLarge => {
                        let second = pending.split_off(pending.len() / 2);
                        queue.push_front(second);
                        queue.push_front(pending);
                        break;
                    }
                    Answer::Fatal(reason) => {
                        self.stop_with(format!("the API refused a batch: {reason}"));
                        return;
                    }
                };
                if !rate_limited {
                    attempts += 1;
                }
                if attempts >= self.max_attempts {
                    let first = pending.first().map_or(0, |item| item.line);
                    self.stop_with(format!(
                        "giving up after {attempts} attempts ({reason}) from line {first}; run again to resume"
                    ));
                    return;
                }
                self.counts.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff(attempts.max(1), retry_after));
            }
        }
    }

    /// A lane: batches from its channel, one after the other.
    fn lane(&self, items: Receiver<Item>) {
        let mut carry: Option<Item> = None;
        loop {
            let Some(first) = carry.take().or_else(|| items.recv().ok()) else {
                return;
            };
            let mut bytes = first.json.to_string().len();
            let mut batch = vec![first];
            // A batch larger than the key's per-second budget could never be admitted whole.
            let size = self
                .client
                .rate_limit()
                .map_or(self.batch_size, |rate| self.batch_size.min(rate as usize));
            while batch.len() < size {
                let Ok(item) = items.recv() else { break };
                let size = item.json.to_string().len();
                if bytes + size > MAX_BATCH_JSON_BYTES {
                    carry = Some(item);
                    break;
                }
                bytes += size;
                batch.push(item);
            }
            self.send(batch);
            if self.stopped() {
                return;
            }
        }
    }
}

/// Exponential with jitter (50 to 100% of 0.5 s × 2^(n-1), at most 30 s), and never
/// sooner than the server's Retry-After.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    let random = RandomState::new().hash_one(attempt) % 1000;
    let jittered = ceiling.mul_f64(0.5 + random as f64 / 2000.0);
    jittered.max(retry_after.unwrap_or_default())
}

fn lane_of(key: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

fn api_key(args: &Args) -> Result<String, String> {
    match (&args.api_key, &args.api_key_file) {
        (Some(key), _) => Ok(key.trim().to_owned()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|key| key.trim().to_owned())
            .map_err(|e| format!("reading {}: {e}", path.display())),
        (None, None) => Err("pass --api-key (or API_KEY) or --api-key-file".into()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("importer: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = api_key(args)?;
    let file = &args.file;
    let format = args.format.unwrap_or_else(|| Format::of(file));
    let kind_name = args.kind.map_or("mixed", ObjectType::plural);
    if format == Format::Csv && args.kind.is_none() {
        return Err("CSV files need --type".into());
    }
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", file.display());
    let total = input::count_lines(file).map_err(|e| io("reading", e))?;
    let checkpoint = Checkpoint::new(state::beside(file, ".checkpoint.json"), file, kind_name)
        .map_err(|e| io("reading", e))?;
    let resume_after = if args.restart {
        None
    } else {
        checkpoint.load()?
    };
    let rejects = Rejects::open(state::beside(file, ".rejects.ndjson"), resume_after)
        .map_err(|e| io("writing the rejects of", e))?;
    let skipped = resume_after.unwrap_or(0);
    let import = Import {
        client: Client::new(&args.url, &key, !args.no_gzip),
        pacer: Pacer::default(),
        checkpoint,
        rejects,
        tracker: Mutex::new(Tracker {
            saved: skipped,
            read_through: skipped,
            ..Tracker::default()
        }),
        counts: Counts::default(),
        progress: progress::Progress::new(args.progress, total, skipped),
        batch_size: usize::from(args.batch_size),
        max_attempts: args.max_attempts,
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
    };
    if let Some(line) = resume_after {
        import.progress.note(&format!(
            "importer: resuming {} after line {line} (checkpoint {})",
            file.display(),
            import.checkpoint.path().display()
        ));
    }
    let started = Instant::now();
    let records = input::records(file, format).map_err(|e| io("reading", e))?;
    let mut builder = ItemBuilder::new(args.kind);
    let lanes = usize::from(args.concurrency);
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..lanes)
            .map(|_| {
                let (sender, receiver) = sync_channel::<Item>(import.batch_size * 2);
                let import = &import;
                scope.spawn(move || import.lane(receiver));
                sender
            })
            .collect();
        for record in records {
            if import.stopped() {
                break;
            }
            let line = record.line;
            let item = record.fields.and_then(|fields| builder.build(line, fields));
            // Lines the checkpoint covers are read only to count identical events.
            if line <= skipped {
                continue;
            }
            match item {
                Err(refusal) => {
                    import.refuse(line, &refusal);
                    import.finished([], Some(line));
                }
                Ok(item) => {
                    {
                        let mut tracker = import.tracker.lock().expect("tracker lock");
                        tracker.in_flight.insert(line);
                        tracker.read_through = line;
                    }
                    let lane = lane_of(&item.lane_key, lanes);
                    if senders[lane].send(item).is_err() {
                        break;
                    }
                }
            }
        }
        drop(senders);
    });
    import.progress.finish();
    let elapsed = started.elapsed();
    let done_through = import.tracker.lock().expect("tracker lock").done_through();
    let fatal = import.fatal.lock().expect("fatal lock").take();
    let counts = &import.counts;
    let Import {
        checkpoint,
        rejects,
        client,
        ..
    } = import;
    let rejects_path = rejects.path().to_owned();
    let refused_total = rejects
        .finish()
        .map_err(|e| io("sorting the rejects of", e))?;
    let get = Counts::get;
    let stored = counts.stored();
    let seconds = elapsed.as_secs_f64().max(0.001);
    println!(
        "importer: {} ({kind_name}, {})",
        file.display(),
        format.name()
    );
    if skipped > 0 {
        println!("  resumed after line {skipped}");
    }
    println!(
        "  stored {stored} ({} created, {} updated, {} replayed), refused {} in this run",
        get(&counts.created),
        get(&counts.updated),
        get(&counts.replayed),
        get(&counts.refused)
    );
    println!(
        "  {} requests ({} retried), gzip {}, {:.1} s, {:.0} lines/s",
        get(&counts.requests),
        get(&counts.retries),
        if client.gzip() { "on" } else { "off" },
        seconds,
        (stored + get(&counts.refused)) as f64 / seconds
    );
    if let Some(reason) = fatal {
        println!("  stopped: {reason}");
        if checkpoint.path().exists() {
            println!(
                "  done through line {done_through}; a re-run resumes from {}",
                checkpoint.path().display()
            );
        }
        return Ok(ExitCode::from(2));
    }
    checkpoint
        .remove()
        .map_err(|e| io("removing the checkpoint of", e))?;
    if refused_total > 0 {
        println!(
            "  {refused_total} refused lines in {}",
            rejects_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    println!("  every line stored");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_honours_retry_after() {
        for attempt in 1..20 {
            let wait = backoff(attempt, None);
            let ceiling = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(10))
                .min(MAX_BACKOFF);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{attempt}: {wait:?}"
            );
        }
        assert!(backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn the_checkpoint_is_before_the_first_line_in_flight() {
        let mut tracker = Tracker::default();
        tracker.in_flight.extend([3, 7]);
        tracker.read_through = 9;
        assert_eq!(tracker.done_through(), 2);
        tracker.in_flight.remove(&3);
        assert_eq!(tracker.done_through(), 6);
        tracker.in_flight.clear();
        assert_eq!(tracker.done_through(), 9);
    }
}
