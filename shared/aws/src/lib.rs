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

/// The SDK configuration every client is built from: the standard
/// environment (region, credentials, `AWS_ENDPOINT_URL_*`) and one HTTPS
/// client on rustls with ring, the only TLS stack the binaries carry.
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await
}

/// Builds the SDK clients (once per cold start) and the ports over them.
pub async fn tally(config: &Config) -> Tally {
    let sdk = sdk_config().await;
    // A function without a table gets a store that says so if used.
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.state_table.clone().unwrap_or_default(),
        config.audit_table.clone().unwrap_or_default(),
    );
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), config.queues.clone());
    Tally::new(Arc::new(store), Arc::new(queue)).with_ledger_step(LedgerStep::Queued)
}

/// The shared Router as the ingest and api functions serve it. Without a
/// configured admin token the admin routes stay closed: nobody can know a
/// random one.
pub async fn http_app(config: &Config) -> axum::Router {
    let admin_token = config
        .admin_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tally_app::http::router(tally_app::http::AppState {
        tally: tally(config).await,
        admin_token: admin_token.into(),
        wake: None,
        feed: None,
    })
}
