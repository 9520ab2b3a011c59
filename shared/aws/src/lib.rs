//! tally-aws: Tally's ports on DynamoDB and SQS, and the Lambda handlers.
//!
//! # Layout
//!
//! - [`config`]: `Config::from_env`, naming every missing variable.
//! - [`dynamo`]: `Store` on DynamoDB (TransactWriteItems).
//! - [`sqs`]: `Queue` on SQS (FIFO groups, deduplication ids).
//! - [`stream`]: DynamoDB stream records decoded to changes and outbox items.
//! - [`handlers`]: one async fn per function; `functions/*` only wire them.
//!
//! The SDK is pointed at emulators by the standard `AWS_ENDPOINT_URL_*`
//! variables; nothing here knows whether it talks to AWS or to DynamoDB
//! Local and moto.

pub mod config;
pub mod dynamo;
pub mod error;
pub mod handlers;
pub mod sqs;
pub mod stream;

use std::sync::Arc;

use tally_app::{LedgerStep, Tally};

pub use config::{Config, Table};
pub use dynamo::DynamoStore;
pub use error::Error;
pub use sqs::SqsQueue;

/// Builds the SDK clients (once per cold start) and the ports over them.
pub async fn tally(config: &Config) -> Tally {
    let sdk = aws_config::load_from_env().await;
    // A function without a table gets a store that says so if used.
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.state_table.clone().unwrap_or_default(),
        config.audit_table.clone().unwrap_or_default(),
    );
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.queues.clone());
    Tally::new(Arc::new(store), Arc::new(queue)).with_ledger_step(LedgerStep::Queued)
}
