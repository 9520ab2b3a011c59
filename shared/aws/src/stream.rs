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
