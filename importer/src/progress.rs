//! Where the import stands, for a person: a bar with rate and ETA on a terminal, a plain
//! line every few seconds otherwise (CI logs, pipes). Always on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Lines,
    None,
}

const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: u64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub fn new(mode: Mode, total: u64, already_done: u64) -> Progress {
        let bar_wanted = match mode {
            Mode::Auto => std::io::stderr().is_terminal(),
            Mode::Bar => true,
            Mode::Lines | Mode::None => false,
        };
        let bar = bar_wanted.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} lines  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template"),
            );
            bar.set_position(already_done);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            lines: !bar_wanted && mode != Mode::None,
            total,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// `done`: lines finished (stored, refused or skipped); `message`: the counts so far.
    pub fn update(&self, done: u64, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(message.to_owned());
            return;
        }
        if !self.lines {
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() < LINE_EVERY {
            return;
        }
        *last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        let percent = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        eprintln!(
            "importer: {done}/{} lines ({percent:.0}%), {rate:.0} lines/s, ETA {eta:.0}s; {message}",
            self.total
        );
    }

    /// A note that must not garble the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
