//! validate: verified deliveries from `inbound` → canonical events, checked,
//! then quarantined or queued for their step (tally_aws::handlers::validate).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::{Config, Table, handlers};
use tally_core::ports::queues;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(
        &[Table::State, Table::Audit],
        &[queues::STOCK, queues::ORDER, queues::SIGNAL],
    )?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handlers::validate::handle(tally, e.payload).await)
    }))
    .await
}
