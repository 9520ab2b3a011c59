//! publish: the state stream's outbox items and stock changes sent on to
//! their queues (tally_aws::handlers::publish).

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::{Config, Table, handlers};
use tally_core::ports::queues;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State], &[queues::ORDER, queues::OUTBOUND])?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<Event>| async move {
        Ok::<_, Error>(handlers::publish::handle(tally, e.payload).await)
    }))
    .await
}
