//! Shopify Admin GraphQL (`POST /admin/api/{version}/graphql.json`,
//! `X-Shopify-Access-Token`).
//!
//! - Stock: `inventorySetQuantities` on the `available` quantity at the
//!   source's `location_id`, compare-and-set against what Tally last
//!   pushed; a stale compare re-reads the levels and tries once more.
//! - Prices: `productVariantsBulkUpdate`, one call per product.
//! - Orders: read `order { cancelledAt tags refunds { note } }` first, then
//!   `orderCancel`, `refundCreate` (the note carries the idempotency key),
//!   or `tagsAdd`/`tagsRemove` of `tally-hold`.
//! - Throttling: cost-based; a `THROTTLED` error waits for the bucket to
//!   refill (`extensions.cost.throttleStatus`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tally_core::push::{ChannelCommand, CommandKind};

use super::{
    ChannelClient, CommandOutcome, Credentials, PriceUpdate, PushError, StockUpdate, product_ref,
    send_json,
};

pub struct ShopifyClient {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
    pub(super) api_version: String,
    pub(super) location_id: Option<String>,
    pub(super) token: Credentials,
}

const HOLD_TAG: &str = "tally-hold";

fn gid(kind: &str, id: &str) -> String {
    if id.starts_with("gid://") {
        id.to_owned()
    } else {
        format!("gid://shopify/{kind}/{id}")
    }
}

impl ShopifyClient {
    async fn graphql(&self, query: &str, variables: Value) -> Result<Value, PushError> {
        let url = format!(
            "{}/admin/api/{}/graphql.json",
            self.base_url, self.api_version
        );
        let answer = send_json(
            self.http
                .post(url)
                .header("X-Shopify-Access-Token", self.token.expose())
                .json(&json!({"query": query, "variables": variables})),
        )
        .await?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
            if errors
                .iter()
                .any(|e| e["extensions"]["code"] == "THROTTLED")
            {
                return Err(PushError::RateLimited(throttle_wait(&answer)));
            }
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            return Err(PushError::Refused(format!(
                "GraphQL: {}",
                messages.join("; ")
            )));
        }
        Ok(answer["data"].clone())
    }

    fn location(&self) -> Result<String, PushError> {
        self.location_id
            .as_deref()
            .map(|l| gid("Location", l))
            .ok_or_else(|| {
                PushError::Refused("the source's api has no location_id to set stock at".into())
            })
    }

    /// The `available` quantity of each item at the location, as Shopify has it now.
    async fn read_levels(
        &self,
        items: &[String],
        location: &str,
    ) -> Result<BTreeMap<String, i64>, PushError> {
        let data = self
            .graphql(
                "query Levels($ids: [ID!]!, $location: ID!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $location) { quantities(names: [\"available\"]) { name quantity } } } } }",
                json!({"ids": items, "location": location}),
            )
            .await?;
        let mut out = BTreeMap::new();
        for node in data["nodes"].as_array().into_iter().flatten() {
            let (Some(id), Some(q)) = (
                node["id"].as_str(),
                node["inventoryLevel"]["quantities"][0]["quantity"].as_i64(),
            ) else {
                continue;
            };
            out.insert(id.to_owned(), q);
        }
        Ok(out)
    }

    async fn set_quantities(&self, quantities: &[Value]) -> Result<Vec<Value>, PushError> {
        let data = self
            .graphql(
                "mutation Set($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { code field message } } }",
                json!({"input": {"name": "available", "reason": "correction",
                                  "referenceDocumentUri": "tally://available-to-sell",
                                  "quantities": quantities}}),
            )
            .await?;
        Ok(data["inventorySetQuantities"]["userErrors"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn order(&self, id: &str) -> Result<Value, PushError> {
        let data = self
            .graphql(
                "query Order($id: ID!) { order(id: $id) { id cancelledAt tags refunds { note } } }",
                json!({"id": id}),
            )
            .await?;
        match &data["order"] {
            Value::Null => Err(PushError::Refused(format!("Shopify has no order {id}"))),
            o => Ok(o.clone()),
        }
    }
}

/// Seconds until the bucket holds what the throttled query asked for.
fn throttle_wait(answer: &Value) -> Duration {
    let cost = &answer["extensions"]["cost"];
    let needed = cost["requestedQueryCost"].as_f64().unwrap_or(0.0);
    let status = &cost["throttleStatus"];
    let available = status["currentlyAvailable"].as_f64().unwrap_or(0.0);
    let restore = status["restoreRate"]
        .as_f64()
        .filter(|r| *r > 0.0)
        .unwrap_or(50.0);
    Duration::from_secs_f64(((needed - available) / restore).clamp(0.5, 60.0))
}

fn user_errors(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["code"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl ChannelClient for ShopifyClient {
    async fn set_stock(&self, items: &[StockUpdate]) -> Result<(), PushError> {
        if items.is_empty() {
            return Ok(());
        }
        let location = self.location()?;
        let ids: Vec<String> = items
            .iter()
            .map(|i| {
                product_ref(&i.refs, &i.sku, "inventory_item_id").map(|id| gid("InventoryItem", id))
            })
            .collect::<Result<_, _>>()?;
        // Compare against what Tally last pushed; read what is there when
        // Tally has never pushed this item.
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        let unknown: Vec<String> = ids
            .iter()
            .zip(items)
            .filter_map(|(id, i)| match i.last_pushed {
                Some(q) => {
                    expected.insert(id.clone(), i64::from(q));
                    None
                }
                None => Some(id.clone()),
            })
            .collect();
        if !unknown.is_empty() {
            expected.extend(self.read_levels(&unknown, &location).await?);
        }
        for attempt in 0..2 {
            let quantities: Vec<Value> = ids
                .iter()
                .zip(items)
                .map(|(id, i)| {
                    json!({"inventoryItemId": id, "locationId": location, "quantity": i.available,
                           "compareQuantity": expected.get(id).copied().unwrap_or(0)})
                })
                .collect();
            let errors = self.set_quantities(&quantities).await?;
            if errors.is_empty() {
                return Ok(());
            }
            let stale = errors
                .iter()
                .any(|e| e["code"].as_str().is_some_and(|c| c.contains("STALE")));
            if !stale || attempt == 1 {
                return Err(if stale {
                    PushError::Unavailable(format!(
                        "inventory kept changing at Shopify: {}",
                        user_errors(&errors)
                    ))
                } else {
                    PushError::Refused(user_errors(&errors))
                });
            }
            // Someone else moved the count since: read it and set again.
            expected = self.read_levels(&ids, &location).await?;
        }
        Ok(())
    }

    async fn set_prices(&self, items: &[PriceUpdate]) -> Result<(), PushError> {
        let mut by_product: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for i in items {
            let product = gid("Product", product_ref(&i.refs, &i.sku, "product_id")?);
            let variant = gid(
                "ProductVariant",
                product_ref(&i.refs, &i.sku, "variant_id")?,
            );
            by_product
                .entry(product)
                .or_default()
                .push(json!({"id": variant, "price": i.price.to_string()}));
        }
        for (product, variants) in by_product {
            let data = self
                .graphql(
                    "mutation Prices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $productId, variants: $variants) { productVariants { id price } userErrors { code field message } } }",
                    json!({"productId": product, "variants": variants}),
                )
                .await?;
            let errors = data["productVariantsBulkUpdate"]["userErrors"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !errors.is_empty() {
                return Err(PushError::Refused(user_errors(&errors)));
            }
        }
        Ok(())
    }

    async fn run_command(&self, c: &ChannelCommand) -> Result<CommandOutcome, PushError> {
        let id = gid("Order", c.order_id.as_str());
        let order = self.order(&id).await?;
        let has_tag = order["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t == HOLD_TAG);
        let (query, variables, payload, errors_field) = match c.command {
            CommandKind::CancelOrder => {
                if !order["cancelledAt"].is_null() {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                (
                    "mutation Cancel($orderId: ID!, $staffNote: String) { orderCancel(orderId: $orderId, reason: OTHER, refund: false, restock: true, notifyCustomer: false, staffNote: $staffNote) { job { id } orderCancelUserErrors { code field message } } }",
                    json!({"orderId": id, "staffNote": format!("tally {}", c.idempotency_key)}),
                    "orderCancel",
                    "orderCancelUserErrors",
                )
            }
            CommandKind::RefundOrder => {
                let key = format!("tally {}", c.idempotency_key);
                let done = order["refunds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["note"].as_str() == Some(&key));
                if done {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                let amount = c
                    .amount()
                    .ok_or_else(|| PushError::Refused("refund without an amount".into()))?;
                (
                    "mutation Refund($input: RefundInput!) { refundCreate(input: $input) { refund { id } userErrors { field message } } }",
                    json!({"input": {"orderId": id, "note": key, "notify": false,
                                     "transactions": [{"orderId": id, "kind": "REFUND", "gateway": "manual", "amount": amount.to_string()}]}}),
                    "refundCreate",
                    "userErrors",
                )
            }
            CommandKind::HoldOrder | CommandKind::ReleaseHold => {
                let hold = c.command == CommandKind::HoldOrder;
                if has_tag == hold {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                if hold {
                    (
                        "mutation Hold($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { userErrors { field message } } }",
                        json!({"id": id, "tags": [HOLD_TAG]}),
                        "tagsAdd",
                        "userErrors",
                    )
                } else {
                    (
                        "mutation Release($id: ID!, $tags: [String!]!) { tagsRemove(id: $id, tags: $tags) { userErrors { field message } } }",
                        json!({"id": id, "tags": [HOLD_TAG]}),
                        "tagsRemove",
                        "userErrors",
                    )
                }
            }
            CommandKind::UpdateAddress => {
                return Err(PushError::Unsupported(
                    "Shopify: change the shipping address in the Shopify admin".into(),
                ));
            }
        };
        let data = self.graphql(query, variables).await?;
        let errors = data[payload][errors_field]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if errors.is_empty() {
            Ok(CommandOutcome::Done)
        } else {
            Err(PushError::Refused(user_errors(&errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_answer_waits_for_the_bucket() {
        let answer = json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                            "extensions": {"cost": {"requestedQueryCost": 202,
                                           "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 2, "restoreRate": 100}}}});
        assert_eq!(throttle_wait(&answer), Duration::from_secs(2));
    }

    #[test]
    fn ids_become_gids_once() {
        assert_eq!(gid("Order", "5912"), "gid://shopify/Order/5912");
        assert_eq!(
            gid("Order", "gid://shopify/Order/5912"),
            "gid://shopify/Order/5912"
        );
    }
}
