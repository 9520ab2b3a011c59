//! ingest: the shared Router under API Gateway (HTTP API) — see
//! `tally_app::http`. Serves `/webhooks/*` and `/events/*`: verify, queue durably, 202.

use tally_aws::{Config, Table, handlers};
use tally_core::ports::queues;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State], &[queues::INBOUND])?;
    lambda_http::run(tally_aws::http_app(&config).await).await
}
