//! From a record to a batch item: its `type`, a product's own `type` as `product_type`, and
//! for events without one a deterministic `idempotency_key`, so a re-run replays instead
//! of counting twice.

use crate::input::Refusal;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The object types of `batch/`, as `--type` names them (plural) and items do (singular).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ObjectType {
    Users,
    Events,
    Products,
    Sales,
    Conversations,
    Messages,
    Bookings,
}

impl ObjectType {
    const ALL: [ObjectType; 7] = [
        ObjectType::Users,
        ObjectType::Events,
        ObjectType::Products,
        ObjectType::Sales,
        ObjectType::Conversations,
        ObjectType::Messages,
        ObjectType::Bookings,
    ];

    pub fn item_type(self) -> &'static str {
        match self {
            ObjectType::Users => "user",
            ObjectType::Events => "event",
            ObjectType::Products => "product",
            ObjectType::Sales => "sale",
            ObjectType::Conversations => "conversation",
            ObjectType::Messages => "message",
            ObjectType::Bookings => "booking",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ObjectType::Users => "users",
            ObjectType::Events => "events",
            ObjectType::Products => "products",
            ObjectType::Sales => "sales",
            ObjectType::Conversations => "conversations",
            ObjectType::Messages => "messages",
            ObjectType::Bookings => "bookings",
        }
    }

    /// `user` or `users`.
    fn from_name(name: &str) -> Option<ObjectType> {
        ObjectType::ALL
            .into_iter()
            .find(|kind| kind.item_type() == name || kind.plural() == name)
    }
}

/// A record ready to send.
#[derive(Debug, Clone)]
pub struct Item {
    pub line: u64,
    pub json: Value,
    /// Items of one lane are sent in file order (see [`Item::lane_key`]).
    pub lane_key: String,
}

/// Builds items, counting identical event lines so each keeps its own derived key.
#[derive(Debug, Default)]
pub struct ItemBuilder {
    file_kind: Option<ObjectType>,
    seen_events: HashMap<[u8; 32], u32>,
}

impl ItemBuilder {
    /// `file_kind`: the `--type` of the whole file, or `None` when each line names its `type`.
    pub fn new(file_kind: Option<ObjectType>) -> ItemBuilder {
        ItemBuilder {
            file_kind,
            seen_events: HashMap::new(),
        }
    }

    pub fn build(&mut self, line: u64, mut fields: Map<String, Value>) -> Result<Item, Refusal> {
        let kind = match self.file_kind {
            Some(kind) => {
                // In a file of one type, `type` is the object's own field (a product's kind).
                if let Some(own) = fields.remove("type") {
                    if kind == ObjectType::Products {
                        fields.insert("product_type".into(), own);
                    }
                }
                kind
            }
            None => match fields.remove("type") {
                Some(Value::String(name)) => {
                    ObjectType::from_name(name.trim()).ok_or_else(|| {
                        Refusal::new(
                            "invalid_field",
                            Some("type"),
                            format!("unknown `type` {name:?}"),
                        )
                    })?
                }
                Some(_) => {
                    return Err(Refusal::new(
                        "invalid_field",
                        Some("type"),
                        "`type` must be a string",
                    ))
                }
                None => {
                    return Err(Refusal::new(
                        "missing_field",
                        Some("type"),
                        "`type` is required (or pass --type for the whole file)",
                    ))
                }
            },
        };
        let absent = |value: Option<&Value>| value.is_none_or(Value::is_null);
        if kind == ObjectType::Events && absent(fields.get("idempotency_key")) {
            let key = self.derived_key(&fields);
            fields.insert("idempotency_key".into(), Value::String(key));
        }
        let lane_key = lane_key(kind, &fields);
        fields.insert("type".into(), Value::String(kind.item_type().into()));
        Ok(Item {
            line,
            json: Value::Object(fields),
            lane_key,
        })
    }

    /// The hash of the event (its fields, keys sorted) and how many identical events came
    /// before it in the file: stable across runs and across edits of other lines.
    fn derived_key(&mut self, fields: &Map<String, Value>) -> String {
        let canonical = Value::Object(fields.clone()).to_string();
        let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        let seen = self.seen_events.entry(digest).or_insert(0);
        let occurrence = *seen;
        *seen += 1;
        let mut hasher = Sha256::new();
        hasher.update(digest);
        hasher.update(occurrence.to_be_bytes());
        format!("import_{}", &hex::encode(hasher.finalize())[..40])
    }
}

/// What orders an item: the user it belongs to when it has one (a user, an event's user, a
/// sale's buyer, a thread's or message's contact, a booking's client), else its own id.
/// Items with the same key go through the same lane, one batch after the other.
fn lane_key(kind: ObjectType, fields: &Map<String, Value>) -> String {
    let identity = |user: Option<&Value>| {
        let user = user?.as_object()?;
        let text = |name: &str| user.get(name).and_then(Value::as_str).map(str::trim);
        match (text("external_user_id"), text("email")) {
            (Some(id), _) if !id.is_empty() => Some(format!("user:{id}")),
            (_, Some(email)) if !email.is_empty() => {
                Some(format!("email:{}", email.to_lowercase()))
            }
            _ => None,
        }
    };
    let own = |name: &str| {
        let id = fields.get(name).and_then(Value::as_str).unwrap_or_default();
        format!("{name}:{}", id.trim())
    };
    let whole = Value::Object(fields.clone());
    let (user, fallback) = match kind {
        ObjectType::Users => (identity(Some(&whole)), "external_user_id"),
        ObjectType::Events => (identity(fields.get("user")), "event"),
        ObjectType::Products => (None, "external_product_id"),
        ObjectType::Sales => (identity(fields.get("buyer")), "sale_id"),
        // A thread's messages in order: the thread decides, not the contact.
        ObjectType::Conversations | ObjectType::Messages => (None, "thread_id"),
        ObjectType::Bookings => (identity(fields.get("client")), "booking_id"),
    };
    user.unwrap_or_else(|| own(fallback))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn identical_event_lines_get_distinct_stable_keys() {
        let event = json!({"event": "app_opened", "user": {"external_user_id": "u"}});
        let keys = |builder: &mut ItemBuilder| {
            (0..2)
                .map(|line| {
                    builder.build(line, fields(event.clone())).unwrap().json["idempotency_key"]
                        .clone()
                })
                .collect::<Vec<_>>()
        };
        let first_run = keys(&mut ItemBuilder::new(Some(ObjectType::Events)));
        assert_ne!(first_run[0], first_run[1]);
        assert_eq!(
            keys(&mut ItemBuilder::new(Some(ObjectType::Events))),
            first_run
        );
        let mut builder = ItemBuilder::new(Some(ObjectType::Events));
        let own = builder
            .build(
                1,
                fields(
                    json!({"event": "x", "user": {"email": "a@b.c"}, "idempotency_key": "mine"}),
                ),
            )
            .unwrap();
        assert_eq!(own.json["idempotency_key"], "mine");
        assert_eq!(own.lane_key, "email:a@b.c");
    }

    #[test]
    fn types_come_from_the_file_or_the_line() {
        let mut products = ItemBuilder::new(Some(ObjectType::Products));
        let item = products
            .build(
                1,
                fields(json!({"external_product_id": "p", "type": "service"})),
            )
            .unwrap();
        assert_eq!(
            item.json,
            json!({"external_product_id": "p", "product_type": "service", "type": "product"})
        );
        let mut mixed = ItemBuilder::new(None);
        let item = mixed
            .build(1, fields(json!({"type": "users", "email": "A@B.C"})))
            .unwrap();
        assert_eq!(
            (&item.json["type"], item.lane_key.as_str()),
            (&json!("user"), "email:a@b.c")
        );
        for (line, code) in [
            (json!({"email": "x"}), "missing_field"),
            (json!({"type": "cats"}), "invalid_field"),
        ] {
            assert_eq!(mixed.build(2, fields(line)).unwrap_err().code, code);
        }
    }
}
