//! push: what the ledger, pricing and approvals decided, sent to each
//! channel's admin API (tally_aws::handlers::push).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::{Config, Table, handlers};
use tally_core::ports::queues;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State, Table::Audit], &[queues::OUTBOUND])?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handlers::push::handle(tally, e.payload).await)
    }))
    .await
}
