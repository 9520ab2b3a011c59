//! monitor: metrics and anomaly alerts from the audit stream, and a
//! scheduled sweep (tally_aws::handlers::monitor).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tally_aws::handlers::monitor::AlertTopic;
use tally_aws::{Config, Table, handlers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    handlers::init_tracing();
    let config = Config::from_env(&[Table::State, Table::Audit], &[])?;
    let policy = tally_app::monitor::policy_from_env()?;
    let tally = &tally_aws::tally(&config).await.with_monitor_policy(policy);
    let topic = match std::env::var("ALERT_TOPIC_ARN") {
        Ok(arn) if !arn.is_empty() => Some(AlertTopic {
            client: aws_sdk_sns::Client::new(&tally_aws::sdk_config().await),
            arn,
        }),
        _ => None,
    };
    let topic = topic.as_ref();
    run(service_fn(move |e: LambdaEvent<Value>| {
        handlers::monitor::handle(tally, topic, e.payload)
    }))
    .await
}
