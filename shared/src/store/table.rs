//! The table definition used to create the table locally (`admin table create`, tests).
//! template.yaml declares the same table for AWS; `tests/api/delivery.rs` fails if the
//! two drift apart. Names and key attributes come from [`super::keys::Index`].

use super::keys::Index;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

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

fn key_schema(keys: &[(&str, KeyType)]) -> Vec<KeySchemaElement> {
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

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

/// Every GSI projects all attributes: the lists they serve return whole records.
fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

/// Creates the table if it does not exist yet, or adds the GSIs an older table lacks (a
/// `make run` table kept in `.local/dynamodb` from before an index was added). Returns
/// whether it created the table.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, aws_sdk_dynamodb::Error> {
    let (table_keys, gsis) = (TABLE_KEYS, GSIS);
    let key_attributes = table_keys
        .iter()
        .chain(gsis.iter().flat_map(|(_, keys)| keys.iter()));
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&TABLE_KEYS)));
    for (name, _) in key_attributes {
        request = request.attribute_definitions(string_attribute(name));
    }
    for (index_name, keys) in GSIS {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index_name)
                .set_key_schema(Some(key_schema(&keys)))
                .projection(all_attributes())
                .build()?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            add_missing_indexes(client, table).await?;
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()?,
        )
        .send()
        .await?;
    Ok(true)
}

/// Adds each GSI of [`GSIS`] the existing table does not have (one UpdateTable per index,
/// as DynamoDB requires). Returns the names of the indexes added.
pub async fn add_missing_indexes(
    client: &Client,
    table: &str,
) -> Result<Vec<&'static str>, aws_sdk_dynamodb::Error> {
    let description = client.describe_table().table_name(table).send().await?;
    let existing: Vec<String> = description
        .table
        .and_then(|t| t.global_secondary_indexes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|index| index.index_name)
        .collect();
    let mut added = Vec::new();
    for (index_name, keys) in GSIS {
        if existing.iter().any(|name| name == index_name) {
            continue;
        }
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(index_name)
            .set_key_schema(Some(key_schema(&keys)))
            .projection(all_attributes())
            .build()?;
        let mut request = client
            .update_table()
            .table_name(table)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            );
        for (name, _) in keys {
            request = request.attribute_definitions(string_attribute(name));
        }
        request.send().await?;
        added.push(index_name);
    }
    Ok(added)
}
