//! What survives an interrupted import: the checkpoint (every line up to `done_through`
//! was stored or refused) and the rejects file (`<FILE>.rejects.ndjson`, one JSON object
//! per refused line: `line`, `code`, `param`, `message`).

use crate::input::Refusal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `<FILE><suffix>`, next to the file.
pub fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub struct Checkpoint {
    path: PathBuf,
    /// Which file (its size and first MiB) and which `--type`: a checkpoint of another
    /// file is never resumed from.
    identity: String,
}

impl Checkpoint {
    pub fn new(path: PathBuf, file: &Path, kind: &str) -> std::io::Result<Checkpoint> {
        let size = fs::metadata(file)?.len();
        let mut head = Vec::new();
        File::open(file)?.take(1 << 20).read_to_end(&mut head)?;
        let identity = format!("{size}:{}:{kind}", hex::encode(Sha256::digest(&head)));
        Ok(Checkpoint { path, identity })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line the last run got through, if it was an import of this very file.
    pub fn load(&self) -> Result<Option<u64>, String> {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return Ok(None);
        };
        let saved: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a checkpoint ({e}); pass --restart",
                self.path.display()
            )
        })?;
        if saved["file"] != self.identity.as_str() {
            return Err(format!(
                "{} belongs to another file or --type; pass --restart to import from the start",
                self.path.display()
            ));
        }
        Ok(saved["done_through_line"].as_u64())
    }

    /// Written to a temporary file and renamed: a kill never leaves half a checkpoint.
    pub fn save(&self, done_through: u64) -> std::io::Result<()> {
        let temporary = beside(&self.path, ".tmp");
        let body = json!({ "file": self.identity, "done_through_line": done_through });
        fs::write(&temporary, format!("{body}\n"))?;
        fs::rename(&temporary, &self.path)
    }

    pub fn remove(&self) -> std::io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

pub struct Rejects {
    path: PathBuf,
    file: Mutex<File>,
}

fn line_of(entry: &str) -> Option<u64> {
    serde_json::from_str::<Value>(entry).ok()?["line"].as_u64()
}

impl Rejects {
    /// A fresh file, or when resuming after `done_through`, the earlier entries up to it
    /// (later lines are sent again, so their refusals will be written again).
    pub fn open(path: PathBuf, resume_after: Option<u64>) -> std::io::Result<Rejects> {
        let kept: Vec<String> = match (resume_after, File::open(&path)) {
            (Some(done), Ok(file)) => BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter(|entry| line_of(entry).is_some_and(|line| line <= done))
                .collect(),
            _ => Vec::new(),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        for entry in &kept {
            writeln!(file, "{entry}")?;
        }
        Ok(Rejects {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, line: u64, refusal: &Refusal) -> std::io::Result<()> {
        // By hand to keep the documented key order (serde_json sorts its maps).
        let text = |value: &str| Value::String(value.to_owned()).to_string();
        let param = refusal.param.as_deref().map_or("null".to_owned(), text);
        let entry = format!(
            r#"{{"line":{line},"code":{},"param":{param},"message":{}}}"#,
            text(&refusal.code),
            text(&refusal.message)
        );
        writeln!(self.file.lock().expect("rejects lock"), "{entry}")
    }

    /// Sorts the entries by line (lanes finish out of order) and says how many there are.
    pub fn finish(self) -> std::io::Result<usize> {
        drop(self.file);
        let mut entries: Vec<(u64, String)> = BufReader::new(File::open(&self.path)?)
            .lines()
            .map_while(Result::ok)
            .filter_map(|entry| Some((line_of(&entry)?, entry)))
            .collect();
        entries.sort_by_key(|(line, _)| *line);
        let mut text = String::new();
        for (_, entry) in &entries {
            text.push_str(entry);
            text.push('\n');
        }
        fs::write(&self.path, text)?;
        Ok(entries.len())
    }
}
