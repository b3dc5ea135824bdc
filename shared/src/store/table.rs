//! The table definition used to create the table locally (`admin table create`, tests).
//! template.yaml declares the same table for AWS; `tests/template.rs` fails if the two
//! drift apart.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

/// (attribute, key type) of the table and of each GSI.
pub const TABLE_KEYS: [(&str, KeyType); 2] = [("PK", KeyType::Hash), ("SK", KeyType::Range)];
pub const GSIS: [(&str, [(&str, KeyType); 2]); 1] = [(
    "GSI1",
    [("GSI1PK", KeyType::Hash), ("GSI1SK", KeyType::Range)],
)];
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

/// Creates the table if it does not exist yet. Returns whether it created it.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, aws_sdk_dynamodb::Error> {
    let key_attributes = TABLE_KEYS
        .iter()
        .chain(GSIS.iter().flat_map(|(_, keys)| keys.iter()));
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&TABLE_KEYS)));
    for (name, _) in key_attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        );
    }
    for (index_name, keys) in GSIS {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index_name)
                .set_key_schema(Some(key_schema(&keys)))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
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
            return Ok(false)
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
