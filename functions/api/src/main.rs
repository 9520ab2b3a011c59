//! api: the shared Router under API Gateway (HTTP API) — see
//! `tally_app::http`. Serves `/v1/*` and `/healthz` behind the admin token.

use tally_app::http::{AppState, router};
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
        ],
    )?;
    let tally = tally_aws::tally(&config).await;
    // Without a configured token the admin routes stay closed: nobody can
    // know a random one.
    let admin_token = config
        .admin_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let app = router(AppState {
        tally,
        admin_token: admin_token.into(),
        wake: None,
        feed: None,
    });
    lambda_http::run(app).await
}
