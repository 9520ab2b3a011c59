//! The admin side: what the merchant configures and what they read back.
//! Every change is committed with its audit record, actor included.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tally_core::audit::Cause;
use tally_core::catalog::{Location, Product, Source};
use tally_core::drift::ledger_figure;
use tally_core::entity::{Entity, Key, Kind};
use tally_core::ledger::StockRecord;
use tally_core::ports::{Expect, Put, Transaction};
use tally_core::{LocationId, Sku, SourceName};

use crate::{AppError, Tally};

/// The person or system behind an admin request.
pub const ADMIN_ACTOR: &str = "admin";

fn parse_id<T>(
    kind: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, AppError> {
    parse(raw).map_err(|e| AppError::BadRequest(format!("{kind} in the path: {e}")))
}

impl Tally {
    fn admin_cause(&self) -> Cause {
        Cause {
            key: format!("admin:{}", uuid::Uuid::now_v7()),
            actor: ADMIN_ACTOR.into(),
            at: self.now(),
        }
    }

    pub async fn put_source(&self, name: &str, body: &Value) -> Result<Value, AppError> {
        let name = parse_id("source", name, SourceName::parse)?;
        let key = Key::source(&name);
        let existing = self
            .store
            .get(std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten();
        let old = existing.as_ref().and_then(|v| v.value.as_source());
        let source = Source::parse(&name, body, old, self.now()).map_err(AppError::Invalid)?;
        let cause = self.admin_cause();
        let before = old.map_or(Value::Null, Source::public_view);
        let after = source.public_view();
        // The secret itself never enters the audit log; only whether it changed.
        let inputs = json!({"secret_changed": old.is_none_or(|o| o.secret != source.secret)});
        let audit = cause.record(
            0,
            format!("source:{name}"),
            "source.updated",
            before,
            after.clone(),
            inputs,
        );
        self.store
            .commit(Transaction {
                puts: vec![Put {
                    expect: Expect::from_loaded(existing.as_ref()),
                    entity: Entity::Source(source),
                }],
                audit: vec![audit],
                ..Default::default()
            })
            .await?;
        Ok(after)
    }

    pub async fn get_source(&self, name: &str) -> Result<Value, AppError> {
        let name = parse_id("source", name, SourceName::parse)?;
        self.source(&name)
            .await?
            .map(|s| s.public_view())
            .ok_or_else(|| AppError::NotFound(format!("source {name:?}")))
    }

    pub async fn put_location(&self, id: &str, body: &Value) -> Result<Value, AppError> {
        let id = parse_id("location", id, LocationId::parse)?;
        let location = Location::parse(&id, body, self.now()).map_err(AppError::Invalid)?;
        let key = Key::location(&id);
        let existing = self
            .store
            .get(std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten();
        let before = existing.as_ref().map_or(Value::Null, |v| {
            serde_json::to_value(&v.value).unwrap_or_default()
        });
        let after = json!({"location": id, "aliases": location.aliases});
        let audit = self.admin_cause().record(
            0,
            format!("location:{id}"),
            "location.updated",
            before,
            after.clone(),
            Value::Null,
        );
        self.store
            .commit(Transaction {
                puts: vec![Put {
                    expect: Expect::from_loaded(existing.as_ref()),
                    entity: Entity::Location(location),
                }],
                audit: vec![audit],
                ..Default::default()
            })
            .await?;
        Ok(after)
    }

    /// Sets a product; its safety stock goes onto its stock record in the
    /// same commit, so the ledger never sees one without the other.
    pub async fn put_product(&self, sku: &str, body: &Value) -> Result<Value, AppError> {
        let sku = parse_id("sku", sku, Sku::parse)?;
        let product = Product::parse(&sku, body, self.now()).map_err(AppError::Invalid)?;
        for _ in 0..10 {
            let keys = [Key::product(&sku), Key::stock(&sku)];
            let mut got = self.store.get(&keys).await?.into_iter();
            let (old_product, old_stock) = (got.next().flatten(), got.next().flatten());
            let mut stock = old_stock
                .as_ref()
                .and_then(|v| v.value.as_stock().cloned())
                .unwrap_or_else(|| StockRecord::new(sku.clone()));
            let cause = self.admin_cause();
            let before = old_product.as_ref().map_or(Value::Null, |v| {
                serde_json::to_value(&v.value).unwrap_or_default()
            });
            let mut audit = vec![cause.record(
                0,
                format!("product:{sku}"),
                "product.updated",
                before,
                serde_json::to_value(Entity::Product(product.clone())).unwrap_or_default(),
                Value::Null,
            )];
            let mut puts = vec![Put {
                expect: Expect::from_loaded(old_product.as_ref()),
                entity: Entity::Product(product.clone()),
            }];
            if old_stock.is_none() || stock.safety_stock != product.safety_stock {
                let locations: Vec<LocationId> = stock.locations.keys().cloned().collect();
                let befores: Vec<Value> =
                    locations.iter().map(|l| stock.location_view(l)).collect();
                stock.safety_stock = product.safety_stock;
                for (i, (l, b)) in locations.iter().zip(befores).enumerate() {
                    audit.push(cause.record(
                        i + 1,
                        stock.audit_entity(l),
                        "stock.safety_stock_set",
                        b,
                        stock.location_view(l),
                        json!({"safety_stock": product.safety_stock}),
                    ));
                }
                stock.updated_at = Some(cause.at);
                puts.push(Put {
                    expect: Expect::from_loaded(old_stock.as_ref()),
                    entity: Entity::Stock(stock),
                });
            }
            match self
                .store
                .commit(Transaction {
                    puts,
                    audit,
                    ..Default::default()
                })
                .await
            {
                Ok(()) => return Ok(product_view(&product)),
                Err(tally_core::Error::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "product {sku} kept changing; try again"
        )))
    }

    pub async fn get_product(&self, sku: &str) -> Result<Value, AppError> {
        let sku = parse_id("sku", sku, Sku::parse)?;
        let p = self.products(std::iter::once(&sku)).await?;
        p.get(&sku)
            .map(product_view)
            .ok_or_else(|| AppError::NotFound(format!("product {sku:?}")))
    }

    /// `GET /v1/stock/{sku}`: totals, each location, and what each
    /// configured channel may sell after its buffer.
    pub async fn stock_view(&self, sku: &str) -> Result<Value, AppError> {
        let sku = parse_id("sku", sku, Sku::parse)?;
        let keys = [Key::stock(&sku), Key::product(&sku)];
        let mut got = self.store.get(&keys).await?.into_iter();
        let (stock, product) = (got.next().flatten(), got.next().flatten());
        let product = product.and_then(|v| v.value.into_product());
        let Some(stock) = stock.and_then(|v| v.value.into_stock()) else {
            return Err(AppError::NotFound(format!("stock for SKU {sku:?}")));
        };
        let channels = self.channels().await?;
        Ok(stock_json(&stock, product.as_ref(), &channels))
    }

    /// `GET /v1/stock`: the stock view of every SKU that has stock.
    pub async fn stock_list(&self) -> Result<Value, AppError> {
        let products: BTreeMap<Sku, Product> = self
            .store
            .list(Kind::Product)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_product())
            .map(|p| (p.sku.clone(), p))
            .collect();
        let channels = self.channels().await?;
        let items: Vec<Value> = self
            .store
            .list(Kind::Stock)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_stock())
            .map(|s| stock_json(&s, products.get(&s.sku), &channels))
            .collect();
        Ok(json!({"items": items}))
    }

    /// `GET /v1/products`.
    pub async fn product_list(&self) -> Result<Value, AppError> {
        let items: Vec<Value> = self
            .store
            .list(Kind::Product)
            .await?
            .into_iter()
            .filter_map(|v| v.value.into_product())
            .map(|p| product_view(&p))
            .collect();
        Ok(json!({"items": items}))
    }

    /// `GET /v1/audit`: one entity's records, or the activity feed.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Value, AppError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        if let Some(entity) = &q.entity {
            let records = self.store.audit_for(entity, limit).await?;
            return Ok(json!({"records": records}));
        }
        if let Some(w) = q.workflow.as_deref()
            && !WORKFLOWS.contains(&w)
        {
            return Err(AppError::BadRequest(format!(
                "workflow must be one of {}",
                WORKFLOWS.join(", ")
            )));
        }
        let narrowed = q.workflow.is_some() || q.sku.is_some() || q.actor.is_some();
        // A narrowed feed looks further back to fill its page.
        let scan = if narrowed { 1000 } else { limit };
        let records: Vec<Value> = self
            .store
            .recent_audit(scan)
            .await?
            .into_iter()
            .filter(|r| q.workflow.as_deref().is_none_or(|w| workflow_of(r) == w))
            .filter(|r| q.actor.as_deref().is_none_or(|a| r.actor == a))
            .filter(|r| q.sku.as_deref().is_none_or(|s| is_about_sku(r, s)))
            .take(limit)
            .map(|r| {
                let workflow = workflow_of(&r);
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["workflow"] = json!(workflow);
                v
            })
            .collect();
        Ok(json!({"records": records}))
    }
}

/// `GET /v1/audit`'s query.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditQuery {
    pub entity: Option<String>,
    pub limit: Option<usize>,
    pub workflow: Option<String>,
    pub sku: Option<String>,
    pub actor: Option<String>,
}

/// The activity feed's workflows.
pub const WORKFLOWS: [&str; 7] = [
    "inventory",
    "pricing",
    "orders",
    "quarantine",
    "channels",
    "catalog",
    "alerts",
];

/// Which workflow an audit record belongs to, by what it is about.
pub fn workflow_of(r: &tally_core::audit::AuditRecord) -> &'static str {
    if r.kind.starts_with("alert.") {
        return "alerts";
    }
    match r.entity.split(':').next().unwrap_or_default() {
        "stock" | "channel_view" => "inventory",
        "price" => "pricing",
        "action" | "order" => "orders",
        "quarantine" => "quarantine",
        "channel" => "channels",
        _ => "catalog",
    }
}

/// Whether a record is about a SKU: by its entity (`stock:SKU@LOC`,
/// `price:SKU`, `product:SKU`, `sku:SKU`) or the SKU its inputs name.
fn is_about_sku(r: &tally_core::audit::AuditRecord, sku: &str) -> bool {
    let of_entity = r
        .entity
        .split_once(':')
        .map(|(_, rest)| rest.split('@').next().unwrap_or(rest));
    of_entity == Some(sku)
        || [&r.inputs, &r.after]
            .iter()
            .any(|v| v.get("sku").and_then(Value::as_str) == Some(sku))
}

/// The stock view of one SKU: totals, each location, and what each
/// channel may sell after its buffer.
fn stock_json(
    stock: &StockRecord,
    product: Option<&Product>,
    channels: &std::collections::BTreeSet<tally_core::Channel>,
) -> Value {
    let channel_figures: serde_json::Map<String, Value> = channels
        .iter()
        .map(|c| (c.to_string(), json!(ledger_figure(Some(stock), product, c))))
        .collect();
    let locations: Vec<Value> = stock
        .locations
        .keys()
        .map(|l| stock.location_view(l))
        .collect();
    json!({
        "sku": stock.sku,
        "on_hand": stock.on_hand(),
        "reserved": stock.reserved(),
        "safety_stock": stock.safety_stock * stock.locations.len() as u32,
        "available": stock.available(),
        "locations": locations,
        "channels": channel_figures,
        "last_stock_event_at": stock.last_stock_event_at,
        "updated_at": stock.updated_at,
    })
}

fn product_view(p: &Product) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("entity");
    }
    v
}
