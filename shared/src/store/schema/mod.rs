//! The schema layer: what is stored where and how, with no I/O and nothing from the rest
//! of the store. [`keys`]: every key and index name; [`table`]: the table definition;
//! [`attributes`]: the attributes and encodings several parts of the store share.

pub mod attributes;
pub mod keys;
pub mod table;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// A stored item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
