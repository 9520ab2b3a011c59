//! DynamoDB stream records as the core understands them: a change to a
//! record (old and new image decoded from `doc`), or an outbox message to
//! relay.

use aws_lambda_events::dynamodb::EventRecord;
use serde_dynamo::AttributeValue;
use tally_core::entity::{Entity, Key};
use tally_core::ports::{Change, Message, OutboxMessage};

use crate::error::Error;

/// What one state-table stream record means.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    Record(Box<Change>),
    /// A message committed with a transaction, to be sent on now.
    Outbox(OutboxMessage),
    /// Markers, outbox deletions, TTL expiries: nothing to do.
    Ignored,
}

fn text<'a>(item: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

fn entity(item: &serde_dynamo::Item, key: &str) -> Result<Option<Entity>, Error> {
    text(item, "doc")
        .map(|doc| {
            serde_json::from_str(doc).map_err(|e| Error::Decode {
                key: key.to_owned(),
                detail: e.to_string(),
            })
        })
        .transpose()
}

pub fn decode(record: &EventRecord) -> Result<StateChange, Error> {
    let c = &record.change;
    let pk = text(&c.keys, "pk")
        .or_else(|| text(&c.new_image, "pk"))
        .or_else(|| text(&c.old_image, "pk"))
        .unwrap_or_default();
    if pk.starts_with("outbox:") {
        if record.event_name != "INSERT" {
            return Ok(StateChange::Ignored);
        }
        let img = &c.new_image;
        let queue = text(img, "queue").ok_or_else(|| Error::Decode {
            key: pk.to_owned(),
            detail: "outbox item without a queue".into(),
        })?;
        return Ok(StateChange::Outbox(OutboxMessage {
            queue: queue.to_owned(),
            message: Message {
                body: text(img, "body").unwrap_or_default().to_owned(),
                group: text(img, "group").map(str::to_owned),
                dedup_id: text(img, "dedup").map(str::to_owned),
            },
        }));
    }
    let Some(key) = Key::parse(pk) else {
        return Ok(StateChange::Ignored);
    };
    Ok(StateChange::Record(Box::new(Change {
        // Stream sequence numbers outgrow u64; the stream's own order is
        // what counts.
        seq: 0,
        old: entity(&c.old_image, pk)?,
        new: entity(&c.new_image, pk)?,
        key,
        at: c.approximate_creation_date_time,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_insert_becomes_the_message_to_relay() {
        let e: aws_lambda_events::dynamodb::Event = serde_json::from_str(include_str!(
            "../../../tests/events/lambda/publish-outbox-order-short.json"
        ))
        .unwrap();
        let StateChange::Outbox(o) = decode(&e.records[0]).unwrap() else {
            panic!("not an outbox item")
        };
        assert_eq!(o.queue, "order");
        assert_eq!(o.message.group.as_deref(), Some("big-1"));
        assert!(o.message.body.contains("order.short"));
    }

    #[test]
    fn a_record_change_decodes_old_and_new() {
        let doc = |n: u32| {
            let mut s = tally_core::ledger::StockRecord::new(tally_core::Sku::parse("A").unwrap());
            s.safety_stock = n;
            serde_json::to_string(&Entity::Stock(s)).unwrap()
        };
        let event = serde_json::json!({"Records": [{
            "eventID": "1", "eventName": "MODIFY", "awsRegion": "eu-west-1",
            "dynamodb": {"Keys": {"pk": {"S": "stock:A"}},
                         "OldImage": {"pk": {"S": "stock:A"}, "doc": {"S": doc(1)}},
                         "NewImage": {"pk": {"S": "stock:A"}, "doc": {"S": doc(2)}},
                         "SizeBytes": 1, "SequenceNumber": "5"}}]});
        let e: aws_lambda_events::dynamodb::Event = serde_json::from_value(event).unwrap();
        let StateChange::Record(c) = decode(&e.records[0]).unwrap() else {
            panic!("not a record change")
        };
        assert_eq!(c.key.as_str(), "stock:A");
        assert_eq!(
            c.old.and_then(|o| o.into_stock()).map(|s| s.safety_stock),
            Some(1)
        );
        assert_eq!(
            c.new.and_then(|o| o.into_stock()).map(|s| s.safety_stock),
            Some(2)
        );
    }
}
