//! The table definition `ops::table` creates the table locally from (`admin table
//! create`, tests). template.yaml declares the same table for AWS; `tests/api/delivery.rs`
//! fails if the two drift apart. Names and key attributes come from [`super::keys::Index`].

use super::keys::Index;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
};

/// (attribute, key type) of the table and of each GSI.
pub const TABLE_KEYS: [(&str, KeyType); 2] = key_types(Index::Table);
pub const GSIS: [(&str, [(&str, KeyType); 2]); 2] = [gsi(Index::GSIS[0]), gsi(Index::GSIS[1])];

const fn key_types(index: Index) -> [(&'static str, KeyType); 2] {
    let (partition, sort) = index.key();
    [(partition, KeyType::Hash), (sort, KeyType::Range)]
}

const fn gsi(index: Index) -> (&'static str, [(&'static str, KeyType); 2]) {
    match index.name() {
        Some(name) => (name, key_types(index)),
        None => panic!("the table itself is not a GSI"),
    }
}
/// Items with this (epoch seconds) attribute are deleted by DynamoDB after that time.
pub const TTL_ATTRIBUTE: &str = "expires_at_epoch";

pub(crate) fn key_schema(keys: &[(&str, KeyType)]) -> Vec<KeySchemaElement> {
    keys.iter()
        .map(|(name, key_type)| {
            KeySchemaElement::builder()
                .attribute_name(*name)
                .key_type(key_type.clone())
                .build()
                .expect("name and type are set")
        })
        .collect()
}

pub(crate) fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

/// Every GSI projects all attributes: the lists they serve return whole records.
pub(crate) fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}
