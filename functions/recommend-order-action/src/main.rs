//! recommend-order-action: order-handling events from `order`
//! (tally_aws::handlers::recommend_order_action).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tally_aws::{Config, Table, handlers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State, Table::Audit], &[])?;
    let tally = &tally_aws::tally(&config).await;
    run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handlers::recommend_order_action::handle(tally, e.payload).await)
    }))
    .await
}
