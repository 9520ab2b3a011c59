//! What the store holds: one enum of record kinds, each under a string key
//! whose prefix is its kind (`stock:TSHIRT-M`, `order:1001`, ...).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::catalog::{Location, Product, Source};
use crate::drift::ChannelView;
use crate::ledger::{OrderRecord, StockRecord};
use crate::monitor::MonitorState;
use crate::pricing::PriceRecord;
use crate::push::{Alert, ChannelSync, PushedRecord};
use crate::quarantine::QuarantineEntry;
use crate::types::{Channel, LocationId, OrderId, Sku, SourceName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Stock,
    Order,
    Product,
    Source,
    Location,
    Quarantine,
    ChannelView,
    Price,
    Action,
    ChannelSync,
    Pushed,
    Alert,
    Monitor,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Stock,
        Kind::Order,
        Kind::Product,
        Kind::Source,
        Kind::Location,
        Kind::Quarantine,
        Kind::ChannelView,
        Kind::Price,
        Kind::Action,
        Kind::ChannelSync,
        Kind::Pushed,
        Kind::Alert,
        Kind::Monitor,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stock => "stock",
            Kind::Order => "order",
            Kind::Product => "product",
            Kind::Source => "source",
            Kind::Location => "location",
            Kind::Quarantine => "quarantine",
            Kind::ChannelView => "channel_view",
            Kind::Price => "price",
            Kind::Action => "action",
            Kind::ChannelSync => "channel_sync",
            Kind::Pushed => "pushed",
            Kind::Alert => "alert",
            Kind::Monitor => "monitor",
        }
    }
    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    fn of(kind: Kind, id: &str) -> Key {
        Key(format!("{}:{id}", kind.as_str()))
    }
    pub fn stock(sku: &Sku) -> Key {
        Key::of(Kind::Stock, sku.as_str())
    }
    pub fn order(id: &OrderId) -> Key {
        Key::of(Kind::Order, id.as_str())
    }
    pub fn product(sku: &Sku) -> Key {
        Key::of(Kind::Product, sku.as_str())
    }
    pub fn source(name: &SourceName) -> Key {
        Key::of(Kind::Source, name.as_str())
    }
    pub fn location(id: &LocationId) -> Key {
        Key::of(Kind::Location, id.as_str())
    }
    pub fn quarantine(id: &str) -> Key {
        Key::of(Kind::Quarantine, id)
    }
    pub fn price(sku: &Sku) -> Key {
        Key::of(Kind::Price, sku.as_str())
    }
    pub fn action(id: &str) -> Key {
        Key::of(Kind::Action, id)
    }
    pub fn channel_sync(channel: &Channel) -> Key {
        Key::of(Kind::ChannelSync, channel.as_str())
    }
    pub fn pushed(channel: &Channel, sku: &Sku) -> Key {
        Key::of(Kind::Pushed, &format!("{channel}/{sku}"))
    }
    pub fn alert(id: &str) -> Key {
        Key::of(Kind::Alert, id)
    }
    /// The anomaly monitor's memory: one record.
    pub fn monitor() -> Key {
        Key::of(Kind::Monitor, "state")
    }
    /// Neither part may contain `/`, so the pair is unambiguous.
    pub fn channel_view(channel: &Channel, sku: &Sku) -> Key {
        Key::of(Kind::ChannelView, &format!("{channel}/{sku}"))
    }
    /// Reads a stored key back; `None` for one no kind owns.
    pub fn parse(raw: &str) -> Option<Key> {
        let (kind, id) = raw.split_once(':')?;
        (Kind::parse(kind).is_some() && !id.is_empty()).then(|| Key(raw.to_owned()))
    }
    pub fn kind(&self) -> Kind {
        self.0
            .split_once(':')
            .and_then(|(k, _)| Kind::parse(k))
            .unwrap_or_else(|| unreachable!("keys are built with a kind"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored as the record's JSON with an `entity` field naming its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entity", rename_all = "snake_case")]
pub enum Entity {
    Stock(StockRecord),
    Order(OrderRecord),
    Product(Product),
    Source(Source),
    Location(Location),
    Quarantine(QuarantineEntry),
    ChannelView(ChannelView),
    Price(PriceRecord),
    Action(Action),
    ChannelSync(ChannelSync),
    Pushed(PushedRecord),
    Alert(Alert),
    Monitor(MonitorState),
}

impl Entity {
    pub fn key(&self) -> Key {
        match self {
            Entity::Stock(s) => Key::stock(&s.sku),
            Entity::Order(o) => Key::order(&o.order_id),
            Entity::Product(p) => Key::product(&p.sku),
            Entity::Source(s) => Key::source(&s.name),
            Entity::Location(l) => Key::location(&l.id),
            Entity::Quarantine(q) => Key::quarantine(&q.id),
            Entity::ChannelView(v) => Key::channel_view(&v.channel, &v.sku),
            Entity::Price(p) => Key::price(&p.sku),
            Entity::Action(a) => Key::action(&a.id),
            Entity::ChannelSync(c) => Key::channel_sync(&c.channel),
            Entity::Pushed(p) => Key::pushed(&p.channel, &p.sku),
            Entity::Alert(a) => Key::alert(&a.id),
            Entity::Monitor(_) => Key::monitor(),
        }
    }
    pub fn kind(&self) -> Kind {
        match self {
            Entity::Stock(_) => Kind::Stock,
            Entity::Order(_) => Kind::Order,
            Entity::Product(_) => Kind::Product,
            Entity::Source(_) => Kind::Source,
            Entity::Location(_) => Kind::Location,
            Entity::Quarantine(_) => Kind::Quarantine,
            Entity::ChannelView(_) => Kind::ChannelView,
            Entity::Price(_) => Kind::Price,
            Entity::Action(_) => Kind::Action,
            Entity::ChannelSync(_) => Kind::ChannelSync,
            Entity::Pushed(_) => Kind::Pushed,
            Entity::Alert(_) => Kind::Alert,
            Entity::Monitor(_) => Kind::Monitor,
        }
    }
}

/// A stored record and the version the store holds it at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

macro_rules! entity_accessors {
    ($($variant:ident => $fn:ident, $into:ident: $ty:ty;)*) => {
        impl Entity {
            $(
                pub fn $fn(&self) -> Option<&$ty> {
                    match self { Entity::$variant(v) => Some(v), _ => None }
                }
                pub fn $into(self) -> Option<$ty> {
                    match self { Entity::$variant(v) => Some(v), _ => None }
                }
            )*
        }
    };
}

entity_accessors! {
    Stock => as_stock, into_stock: StockRecord;
    Order => as_order, into_order: OrderRecord;
    Product => as_product, into_product: Product;
    Source => as_source, into_source: Source;
    Location => as_location, into_location: Location;
    Quarantine => as_quarantine, into_quarantine: QuarantineEntry;
    ChannelView => as_channel_view, into_channel_view: ChannelView;
    Price => as_price, into_price: PriceRecord;
    Action => as_action, into_action: Action;
    ChannelSync => as_channel_sync, into_channel_sync: ChannelSync;
    Pushed => as_pushed, into_pushed: PushedRecord;
    Alert => as_alert, into_alert: Alert;
    Monitor => as_monitor, into_monitor: MonitorState;
}
