//! The file, one record at a time: NDJSON (one JSON object per line, blank lines skipped) or
//! CSV (a header row of field names, dotted for nested fields: `buyer.email`). Each record
//! keeps its 1-based line number, which the rejects file and the checkpoint speak in.

use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A line the importer refuses before sending it, in the shape of an API error.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: String,
    pub param: Option<String>,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, param: Option<&str>, message: impl Into<String>) -> Refusal {
        Refusal {
            code: code.to_owned(),
            param: param.map(str::to_owned),
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub struct Record {
    /// 1-based line of the file where the record starts.
    pub line: u64,
    pub fields: Result<Map<String, Value>, Refusal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "NDJSON",
            Format::Csv => "CSV",
        }
    }

    /// `.csv` is CSV, anything else NDJSON.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Ndjson,
        }
    }
}

/// CSV cells are text; these columns (by their last dotted segment) are whole numbers,
/// booleans or JSON, as the API expects them. A cell that does not parse is sent as text,
/// so the API refuses it with its own precise error.
const INTEGER_COLUMNS: [&str; 5] = [
    "install_count",
    "total_payments_count",
    "quantity",
    "duration_minutes",
    "approx_duration_minutes",
];
const BOOLEAN_COLUMNS: [&str; 3] = ["is_installed", "is_active_customer", "is_active"];
const JSON_COLUMNS: [&str; 5] = [
    "metadata",
    "properties",
    "media",
    "services",
    "service_external_ids",
];

fn cell_value(column: &str, cell: &str) -> Value {
    let name = column.rsplit('.').next().unwrap_or(column);
    let parsed = if INTEGER_COLUMNS.contains(&name) {
        cell.trim().parse::<u64>().ok().map(Value::from)
    } else if BOOLEAN_COLUMNS.contains(&name) {
        match cell.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        }
    } else if JSON_COLUMNS.contains(&name) {
        serde_json::from_str(cell).ok()
    } else {
        None
    };
    parsed.unwrap_or_else(|| Value::String(cell.to_owned()))
}

/// Puts `value` at the dotted `path` of `object`, creating the nested objects.
fn insert_dotted(object: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), Refusal> {
    let conflict = || {
        Refusal::new(
            "invalid_field",
            Some(path),
            format!("column `{path}` conflicts with another column"),
        )
    };
    let mut segments = path.split('.').peekable();
    let mut current = object;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            if current.insert(segment.to_owned(), value).is_some() {
                return Err(conflict());
            }
            return Ok(());
        }
        let next = current
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        current = next.as_object_mut().ok_or_else(conflict)?;
    }
    Ok(())
}

/// The records of `path`, in file order.
pub fn records(path: &Path, format: Format) -> std::io::Result<Box<dyn Iterator<Item = Record>>> {
    let file = BufReader::new(File::open(path)?);
    Ok(match format {
        Format::Ndjson => Box::new(ndjson(file)),
        Format::Csv => Box::new(csv_records(file)),
    })
}

fn ndjson(reader: impl BufRead) -> impl Iterator<Item = Record> {
    reader.split(b'\n').enumerate().filter_map(|(index, line)| {
        let line_number = index as u64 + 1;
        let bytes = match line {
            Ok(bytes) => bytes,
            Err(error) => {
                return Some(Record {
                    line: line_number,
                    fields: Err(Refusal::new("invalid_json", None, error.to_string())),
                })
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let fields = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(Refusal::new(
                "invalid_json",
                None,
                "each line must be a JSON object",
            )),
            Err(error) => Err(Refusal::new(
                "invalid_json",
                None,
                format!("the line is not valid JSON: {error}"),
            )),
        };
        Some(Record {
            line: line_number,
            fields,
        })
    })
}

fn csv_records(reader: impl Read + 'static) -> impl Iterator<Item = Record> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = reader.headers().cloned().map_err(|error| error.to_string());
    let mut rows = reader.into_records();
    let mut header_reported = false;
    std::iter::from_fn(move || {
        let headers = match &headers {
            Ok(headers) => headers,
            Err(_) if header_reported => return None,
            Err(error) => {
                header_reported = true;
                return Some(Record {
                    line: 1,
                    fields: Err(Refusal::new(
                        "invalid_field",
                        None,
                        format!("the header row: {error}"),
                    )),
                });
            }
        };
        let row = rows.next()?;
        Some(match row {
            Err(error) => Record {
                line: error.position().map_or(0, |p| p.line()),
                fields: Err(Refusal::new(
                    "invalid_field",
                    None,
                    format!("the CSV row: {error}"),
                )),
            },
            Ok(row) => {
                let line = row.position().map_or(0, |p| p.line());
                let mut object = Map::new();
                let mut fields = Ok(());
                if row.len() != headers.len() {
                    fields = Err(Refusal::new(
                        "invalid_field",
                        None,
                        format!(
                            "the row has {} cells, the header {}",
                            row.len(),
                            headers.len()
                        ),
                    ));
                }
                for (column, cell) in headers.iter().zip(row.iter()) {
                    // An empty cell is an absent field.
                    if cell.is_empty() || fields.is_err() {
                        continue;
                    }
                    fields =
                        insert_dotted(&mut object, column.trim(), cell_value(column.trim(), cell));
                }
                Record {
                    line,
                    fields: fields.map(|()| object),
                }
            }
        })
    })
}

/// Lines in the file, for the progress total (a quick pass over the bytes).
pub fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut count = 0u64;
    let mut last = b'\n';
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        count += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        last = *buffer.last().expect("not empty");
        let consumed = buffer.len();
        reader.consume(consumed);
    }
    Ok(count + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(format: Format, text: &'static str) -> Vec<Record> {
        match format {
            Format::Ndjson => ndjson(text.as_bytes()).collect(),
            Format::Csv => csv_records(text.as_bytes()).collect(),
        }
    }

    #[test]
    fn ndjson_lines_keep_their_numbers_and_refuse_what_is_not_an_object() {
        let records = all(Format::Ndjson, "{\"a\": 1}\n\n[1]\n{oops\n{\"b\": 2}");
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        assert_eq!(records[0].fields.as_ref().unwrap()["a"], 1);
        assert_eq!(records[1].fields.as_ref().unwrap_err().code, "invalid_json");
        assert_eq!(records[2].fields.as_ref().unwrap_err().code, "invalid_json");
        assert_eq!(records[3].fields.as_ref().unwrap()["b"], 2);
    }

    #[test]
    fn csv_headers_are_dotted_paths_and_typed_columns_are_converted() {
        let records = all(
            Format::Csv,
            "sale_id,quantity,buyer.email,buyer.is_installed,metadata,total\n\
             s1,2,A@B.C,true,\"{\"\"k\"\": 1}\",29.00\n\
             s2,two,,,,\n\
             \"s3\nwith a newline\",1,,,,\n\
             s4,1\n",
        );
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 6]);
        assert_eq!(
            Value::Object(records[0].fields.clone().unwrap()),
            json!({"sale_id": "s1", "quantity": 2, "buyer": {"email": "A@B.C", "is_installed": true},
                   "metadata": {"k": 1}, "total": "29.00"})
        );
        assert_eq!(
            Value::Object(records[1].fields.clone().unwrap()),
            json!({"sale_id": "s2", "quantity": "two"})
        );
        assert_eq!(
            records[3].fields.as_ref().unwrap_err().code,
            "invalid_field"
        );
    }

    #[test]
    fn conflicting_columns_are_refused() {
        let records = all(Format::Csv, "buyer,buyer.email\nx,a@b.c\n");
        let refusal = records[0].fields.as_ref().unwrap_err();
        assert_eq!(refusal.param.as_deref(), Some("buyer.email"));
    }
}
