//! `Queue` on SQS. Logical names (`inbound`, `stock`, `stock-dlq`, ...) map
//! to queue URLs from the configuration. FIFO queues (URL ending `.fifo`)
//! get a MessageGroupId (the order or SKU) and a MessageDeduplicationId
//! (the event's idempotency key, hashed when longer than SQS allows).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use sha2::{Digest, Sha256};
use tally_core::ports::{Message, Queue, Received};

use crate::error::Error;

/// SQS ids (group, deduplication) are at most 128 characters.
const MAX_ID: usize = 128;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: BTreeMap<String, String>,
}

/// An id SQS accepts: kept as is when it fits, else a digest of it.
fn sqs_id(raw: &str) -> String {
    let fits = raw.len() <= MAX_ID && raw.chars().all(|c| c.is_ascii_graphic());
    if fits {
        raw.to_owned()
    } else {
        hex::encode(Sha256::digest(raw.as_bytes()))
    }
}

impl SqsQueue {
    pub fn new(client: Client, urls: BTreeMap<String, String>) -> Self {
        Self { client, urls }
    }

    fn url(&self, queue: &str) -> Result<&str, Error> {
        self.urls
            .get(queue)
            .map(String::as_str)
            .ok_or_else(|| Error::UnknownQueue(queue.to_owned()))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, messages: Vec<Message>) -> tally_core::Result<()> {
        let url = self.url(queue)?;
        let fifo = url.ends_with(".fifo");
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut e = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&m.body);
                    if fifo {
                        e = e
                            .message_group_id(sqs_id(m.group.as_deref().unwrap_or("default")))
                            .message_deduplication_id(sqs_id(
                                m.dedup_id
                                    .as_deref()
                                    .unwrap_or(&uuid::Uuid::new_v4().to_string()),
                            ));
                    }
                    e.build().map_err(|e| Error::sdk("sqs", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let resp = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::sdk("sqs send_message_batch", e))?;
            if !resp.failed().is_empty() {
                return Err(Error::Sdk {
                    service: "sqs send_message_batch",
                    detail: format!("{:?}", resp.failed()),
                }
                .into());
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> tally_core::Result<Vec<Received>> {
        let url = self.url(queue)?;
        let resp = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| Error::sdk("sqs receive_message", e))?;
        Ok(resp
            .messages()
            .iter()
            .map(|m| {
                let attrs = m.attributes();
                Received {
                    receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    group: attrs
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned(),
                    receive_count: attrs
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                }
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt: &str) -> tally_core::Result<()> {
        self.client
            .delete_message()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| Error::sdk("sqs delete_message", e))?;
        Ok(())
    }

    async fn retry_after(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> tally_core::Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| Error::sdk("sqs change_message_visibility", e))?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> tally_core::Result<u64> {
        let resp = self
            .client
            .get_queue_attributes()
            .queue_url(self.url(queue)?)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| Error::sdk("sqs get_queue_attributes", e))?;
        let count = |name: QueueAttributeName| {
            resp.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_fit_are_kept_and_others_hashed() {
        assert_eq!(sqs_id("erp:wms-8812"), "erp:wms-8812");
        let long = "x".repeat(200);
        assert_eq!(sqs_id(&long).len(), 64);
        assert_ne!(sqs_id("a b"), "a b");
    }
}
