//! monitor: metrics from the audit stream (tally_aws::handlers::monitor).

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::handlers;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    run(service_fn(|e: LambdaEvent<Event>| async move {
        handlers::monitor::handle(e.payload).await;
        Ok::<_, Error>(())
    }))
    .await
}
