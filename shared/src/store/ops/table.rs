//! Creating the table locally (`admin table create`, tests) from its definition in
//! [`crate::store::schema::table`], and adding the indexes an older table lacks.

use crate::store::schema::table::{all_attributes, key_schema, string_attribute};
// The definition comes with the calls, so that `store::table` is the whole table.
pub use crate::store::schema::table::{GSIS, TABLE_KEYS, TTL_ATTRIBUTE};
use aws_sdk_dynamodb::types::{
    BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

/// Whether a table created here gets the stream the change feed is derived from. The
/// deployed table and `make run`'s have it; tables that only tests write into and never
/// read the stream of go without: on DynamoDB Local a transaction into a streamed table
/// slows down as its stream grows (docs/testing.md, "The stream in tests").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableStream {
    On,
    Off,
}

/// Creates the table if it does not exist yet, or adds the GSIs an older table lacks (a
/// `make run` table kept in `.local/dynamodb` from before an index was added). Returns
/// whether it created the table.
pub async fn create_table(
    client: &Client,
    table: &str,
    stream: TableStream,
) -> Result<bool, aws_sdk_dynamodb::Error> {
    let (table_keys, gsis) = (TABLE_KEYS, GSIS);
    let key_attributes = table_keys
        .iter()
        .chain(gsis.iter().flat_map(|(_, keys)| keys.iter()));
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&TABLE_KEYS)));
    if stream == TableStream::On {
        request = request.stream_specification(stream_specification()?);
    }
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

/// The table's stream: the change feed is derived from it (both images of every write).
fn stream_specification() -> Result<StreamSpecification, aws_sdk_dynamodb::error::BuildError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
}

/// Turns the stream on for a table created before the change feed (a `make run` table
/// kept in `.local/dynamodb`; `admin table create` calls it). Not part of [`create_table`]:
/// on DynamoDB Local an UpdateTable of the stream stalls every request for seconds.
pub async fn enable_stream(client: &Client, table: &str) -> Result<(), aws_sdk_dynamodb::Error> {
    let description = client.describe_table().table_name(table).send().await?;
    let enabled = description
        .table
        .and_then(|t| t.stream_specification)
        .is_some_and(|spec| spec.stream_enabled);
    if !enabled {
        client
            .update_table()
            .table_name(table)
            .stream_specification(stream_specification()?)
            .send()
            .await?;
    }
    Ok(())
}

/// The ARN of the table's stream, if it has one (what a local poller reads).
pub async fn stream_arn(
    client: &Client,
    table: &str,
) -> Result<Option<String>, aws_sdk_dynamodb::Error> {
    let description = client.describe_table().table_name(table).send().await?;
    Ok(description.table.and_then(|t| t.latest_stream_arn))
}
