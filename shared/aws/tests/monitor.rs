//! The monitor function against DynamoDB Local (its audit stream) and
//! moto's SNS and SQS: an anomalous count raises one alert, stored in the
//! state table, and the alert reaches the SNS topic's subscribers.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use support::{NEEDS_EMULATORS, StreamPump};
use tally_app::Tally;
use tally_aws::handlers::monitor::{AlertTopic, handle};
use tally_aws::{DynamoStore, SqsQueue};
use tally_core::audit::Cause;
use tally_core::ports::{Store, Transaction};

#[tokio::test]
#[ignore = "needs DynamoDB Local and moto; infra/test.sh starts them and runs this"]
async fn an_anomalous_count_raises_one_alert_and_publishes_it() {
    let _ = NEEDS_EMULATORS;
    let sdk = support::sdk().await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (state, audit) = (format!("mon-state-{run}"), format!("mon-audit-{run}"));
    support::create_tables(&sdk, &state, &audit).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        state,
        audit.clone(),
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        BTreeMap::new(),
    ));
    let tally = Tally::new(store.clone(), queue);
    tally
        .put_source(
            "erp",
            &json!({"platform": "tally", "secret": "erp-secret-0123456789"}),
        )
        .await
        .unwrap();

    // The topic, with an SQS queue subscribed so the test can read it.
    let sns = aws_sdk_sns::Client::new(&sdk);
    let arn = sns
        .create_topic()
        .name(format!("alerts-{run}"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let inbox = sqs
        .create_queue()
        .queue_name(format!("alert-inbox-{run}"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let inbox_arn = sqs
        .get_queue_attributes()
        .queue_url(&inbox)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(inbox_arn)
        .send()
        .await
        .unwrap();
    let topic = AlertTopic { client: sns, arn };

    // The ledger wrote a count that fell from 120 to 9.
    let mut pump = StreamPump::new(&sdk, &audit).await;
    pump.next_event().await; // the source's own audit record
    let cause = Cause::system("erp:count-9", chrono::Utc::now());
    store
        .commit(Transaction {
            audit: vec![cause.record(
                0,
                "stock:A@WH".into(),
                "stock.counted",
                json!({"on_hand": 120}),
                json!({"on_hand": 9}),
                json!({}),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    let counted = pump.next_event().await;
    let resp = handle(&tally, Some(&topic), counted.clone()).await.unwrap();
    assert_eq!(resp["batchItemFailures"], json!([]), "{resp}");
    // Lambda retries the same batch: nothing is raised twice.
    handle(&tally, Some(&topic), counted).await.unwrap();
    let alerts = tally.alerts().await.unwrap();
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{alerts}");
    assert_eq!(items[0]["kind"], "stock_drop");

    // The alert's own audit record comes by on the stream: it is published.
    let raised = pump.next_event().await;
    handle(&tally, Some(&topic), raised).await.unwrap();
    let mut got = vec![];
    for _ in 0..20 {
        let r = sqs
            .receive_message()
            .queue_url(&inbox)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        got.extend(
            r.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "{got:?}");
    // SNS wraps the message in its envelope.
    let envelope: Value = serde_json::from_str(&got[0]).unwrap();
    let alert: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(alert["kind"], "stock_drop", "{alert}");
    assert_eq!(alert["subject"], "stock:A@WH");

    // The scheduled sweep runs too (nothing silent or drifting here).
    let swept = handle(
        &tally,
        Some(&topic),
        json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
    )
    .await
    .unwrap();
    assert_eq!(swept["raised"], 0);
}
