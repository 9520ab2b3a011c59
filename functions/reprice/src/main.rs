//! reprice: pricing signals from `signal` and stock changes from the state
//! stream (tally_aws::handlers::reprice).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tally_aws::handlers;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    run(service_fn(|e: LambdaEvent<Value>| {
        handlers::reprice::handle(e.payload)
    }))
    .await
}
