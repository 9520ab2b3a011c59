//! api: the shared Router under API Gateway (HTTP API) — see
//! `tally_app::http`. Serves `/v1/*` and `/healthz` behind the admin token.

use tally_aws::{Config, Table, handlers};
use tally_core::ports::queues;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    handlers::init_tracing();
    let config = Config::from_env(
        &[Table::State, Table::Audit],
        &[
            queues::INBOUND,
            queues::STOCK,
            queues::ORDER,
            queues::SIGNAL,
            queues::OUTBOUND,
        ],
    )?;
    lambda_http::run(tally_aws::http_app(&config).await).await
}
