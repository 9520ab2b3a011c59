//! WooCommerce REST API v3 (`/wp-json/wc/v3`, consumer key and secret as
//! HTTP Basic over HTTPS).
//!
//! - Stock and prices: `POST /products/batch` (`stock_quantity` with
//!   `manage_stock`, `regular_price`), or `/products/{id}/variations/batch`
//!   for a variation; per-item errors in the answer fail the push.
//! - Orders: `GET /orders/{id}` first, then `PUT /orders/{id}` with the new
//!   status (`cancelled`, `on-hold`, `processing`); refunds read
//!   `GET /orders/{id}/refunds` for one whose reason carries the
//!   idempotency key before `POST /orders/{id}/refunds`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use tally_core::push::{ChannelCommand, CommandKind};

use super::{
    ChannelClient, CommandOutcome, Credentials, PriceUpdate, PushError, StockUpdate, product_ref,
    send_json,
};

pub struct WooClient {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
    pub(super) key: Credentials,
    pub(super) secret: Credentials,
}

impl WooClient {
    fn url(&self, path: &str) -> String {
        format!("{}/wp-json/wc/v3{path}", self.base_url)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(self.key.expose(), Some(self.secret.expose()))
    }

    /// One batch call per parent (products, or one product's variations).
    async fn batch_update(&self, updates: BTreeMap<String, Vec<Value>>) -> Result<(), PushError> {
        for (path, items) in updates {
            // WooCommerce takes up to 100 objects per batch.
            for chunk in items.chunks(100) {
                let answer = send_json(
                    self.request(reqwest::Method::POST, &path)
                        .json(&json!({"update": chunk})),
                )
                .await?;
                let failed: Vec<String> = answer["update"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| {
                        u.get("error").map(|e| {
                            format!("{}: {}", u["id"], e["message"].as_str().unwrap_or("error"))
                        })
                    })
                    .collect();
                if !failed.is_empty() {
                    return Err(PushError::Refused(failed.join("; ")));
                }
            }
        }
        Ok(())
    }

    fn batch_path(
        refs: &BTreeMap<String, String>,
        sku: &tally_core::Sku,
    ) -> Result<(String, String), PushError> {
        let product = product_ref(refs, sku, "product_id")?;
        Ok(match refs.get("variation_id") {
            Some(v) => (format!("/products/{product}/variations/batch"), v.clone()),
            None => ("/products/batch".to_owned(), product.to_owned()),
        })
    }
}

fn numeric_id(id: &str) -> Value {
    id.parse::<u64>()
        .map_or_else(|_| Value::String(id.to_owned()), Value::from)
}

#[async_trait]
impl ChannelClient for WooClient {
    async fn set_stock(&self, items: &[StockUpdate]) -> Result<(), PushError> {
        let mut updates: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for i in items {
            let (path, id) = Self::batch_path(&i.refs, &i.sku)?;
            updates.entry(path).or_default().push(
                json!({"id": numeric_id(&id), "manage_stock": true, "stock_quantity": i.available}),
            );
        }
        self.batch_update(updates).await
    }

    async fn set_prices(&self, items: &[PriceUpdate]) -> Result<(), PushError> {
        let mut updates: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for i in items {
            let (path, id) = Self::batch_path(&i.refs, &i.sku)?;
            updates
                .entry(path)
                .or_default()
                .push(json!({"id": numeric_id(&id), "regular_price": i.price.to_string()}));
        }
        self.batch_update(updates).await
    }

    async fn run_command(&self, c: &ChannelCommand) -> Result<CommandOutcome, PushError> {
        let order_path = format!("/orders/{}", c.order_id);
        let order = send_json(self.request(reqwest::Method::GET, &order_path)).await?;
        let status = order["status"].as_str().unwrap_or("");
        let target = match c.command {
            CommandKind::CancelOrder => "cancelled",
            CommandKind::HoldOrder => "on-hold",
            CommandKind::ReleaseHold => "processing",
            CommandKind::RefundOrder => {
                let key = format!("tally {}", c.idempotency_key);
                let refunds =
                    send_json(self.request(reqwest::Method::GET, &format!("{order_path}/refunds")))
                        .await?;
                if refunds
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["reason"].as_str() == Some(&key))
                {
                    return Ok(CommandOutcome::AlreadyDone);
                }
                let amount = c
                    .amount()
                    .ok_or_else(|| PushError::Refused("refund without an amount".into()))?;
                send_json(
                    self.request(reqwest::Method::POST, &format!("{order_path}/refunds"))
                        .json(&json!({"amount": amount.to_string(), "reason": key, "api_refund": false})),
                )
                .await?;
                return Ok(CommandOutcome::Done);
            }
            CommandKind::UpdateAddress => {
                return Err(PushError::Unsupported(
                    "WooCommerce: change the shipping address in the WooCommerce admin".into(),
                ));
            }
        };
        if status == target {
            return Ok(CommandOutcome::AlreadyDone);
        }
        send_json(
            self.request(reqwest::Method::PUT, &order_path)
                .json(&json!({"status": target})),
        )
        .await?;
        Ok(CommandOutcome::Done)
    }
}
