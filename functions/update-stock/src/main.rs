//! update-stock: ledger events from `stock` applied with the persistence
//! primitive (tally_aws::handlers::update_stock).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::{Config, Table, handlers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State, Table::Audit], &[])?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handlers::update_stock::handle(tally, e.payload).await)
    }))
    .await
}
