//! reprice: pricing signals from `signal` and stock changes from the state
//! stream (tally_aws::handlers::reprice).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tally_aws::{Config, Table, handlers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State, Table::Audit], &[])?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<Value>| {
        handlers::reprice::handle(tally, e.payload)
    }))
    .await
}
