//! Shopware 6 Admin API (`/api`), OAuth client credentials.
//!
//! - Token: `POST /api/oauth/token` (`grant_type=client_credentials`),
//!   kept until shortly before it expires; a 401 fetches a new one once.
//! - Stock and prices: one `POST /api/_action/sync` upsert of `product`
//!   (`stock`; `price` with the source's `currency_id`, gross = net unless
//!   the product's refs give a `tax_rate`).
//! - Orders: Tally's order id is the order number, so a search
//!   (`POST /api/search/order`, with `stateMachineState`) finds the order
//!   and its state first; then `POST /api/_action/order/{id}/state/cancel`.
//!   Holds and refunds have no order transition in Shopware's default
//!   state machine: they are left to a person.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_core::push::{ChannelCommand, CommandKind};

use super::{
    ChannelClient, CommandOutcome, Credentials, PriceUpdate, PushError, StockUpdate, product_ref,
    send_json,
};

/// Shopware's default currency (EUR) id, `Defaults::CURRENCY`.
const DEFAULT_CURRENCY_ID: &str = "b7d2554b0ce847cd82f3ac9bd1c0dfca";

pub struct ShopwareClient {
    http: reqwest::Client,
    base_url: String,
    client_id: Credentials,
    client_secret: Credentials,
    currency_id: String,
    token: Mutex<Option<(Credentials, Instant)>>,
}

impl ShopwareClient {
    pub(super) fn new(
        http: reqwest::Client,
        base_url: String,
        client_id: Credentials,
        client_secret: Credentials,
        currency_id: Option<String>,
    ) -> Self {
        Self {
            http,
            base_url,
            client_id,
            client_secret,
            currency_id: currency_id.unwrap_or_else(|| DEFAULT_CURRENCY_ID.into()),
            token: Mutex::new(None),
        }
    }

    async fn token(&self) -> Result<Credentials, PushError> {
        if let Some((t, until)) = &*self.token.lock().unwrap_or_else(|p| p.into_inner())
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let answer = send_json(
            self.http
                .post(format!("{}/api/oauth/token", self.base_url))
                .json(&json!({
                    "grant_type": "client_credentials",
                    "client_id": self.client_id.expose(),
                    "client_secret": self.client_secret.expose(),
                })),
        )
        .await?;
        let token = answer["access_token"]
            .as_str()
            .map(|t| Credentials(t.to_owned()))
            .ok_or_else(|| PushError::Refused("Shopware gave no access_token".into()))?;
        // Renew a minute early; Shopware's tokens last 10 minutes.
        let lasts = answer["expires_in"]
            .as_u64()
            .unwrap_or(600)
            .saturating_sub(60);
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((token.clone(), Instant::now() + Duration::from_secs(lasts)));
        Ok(token)
    }

    /// An authenticated call; one fresh token on a 401.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, PushError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut req = self
                .http
                .request(method.clone(), format!("{}/api{path}", self.base_url))
                .bearer_auth(token.expose())
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req.json(b);
            }
            match send_json(req).await {
                Err(PushError::Refused(why)) if why.starts_with("401") && attempt == 0 => {
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                other => return other,
            }
        }
        Err(PushError::Refused(
            "Shopware refused the credentials".into(),
        ))
    }

    async fn sync(&self, payload: Vec<Value>) -> Result<(), PushError> {
        if payload.is_empty() {
            return Ok(());
        }
        self.call(
            reqwest::Method::POST,
            "/_action/sync",
            Some(json!({"tally-push": {"entity": "product", "action": "upsert", "payload": payload}})),
        )
        .await
        .map(|_| ())
    }
}

/// Shopware's prices are JSON numbers. A decimal's text read as a number
/// writes back as the same text (shortest round trip), so the amount on the
/// wire is exact for any price with up to 15 significant digits.
fn number(d: Decimal) -> Value {
    d.normalize()
        .to_string()
        .parse::<serde_json::Number>()
        .map_or_else(|_| Value::String(d.to_string()), Value::Number)
}

#[async_trait]
impl ChannelClient for ShopwareClient {
    async fn set_stock(&self, items: &[StockUpdate]) -> Result<(), PushError> {
        let payload = items
            .iter()
            .map(|i| {
                Ok(json!({"id": product_ref(&i.refs, &i.sku, "product_id")?, "stock": i.available}))
            })
            .collect::<Result<Vec<_>, PushError>>()?;
        self.sync(payload).await
    }

    async fn set_prices(&self, items: &[PriceUpdate]) -> Result<(), PushError> {
        let payload = items
            .iter()
            .map(|i| {
                let id = product_ref(&i.refs, &i.sku, "product_id")?;
                let tax: Decimal = i.refs.get("tax_rate").and_then(|t| t.parse().ok()).unwrap_or_default();
                let net = (i.price / (Decimal::ONE + tax / Decimal::ONE_HUNDRED)).round_dp(4);
                Ok(json!({"id": id, "price": [{"currencyId": self.currency_id, "gross": number(i.price),
                                               "net": number(net), "linked": true}]}))
            })
            .collect::<Result<Vec<_>, PushError>>()?;
        self.sync(payload).await
    }

    async fn run_command(&self, c: &ChannelCommand) -> Result<CommandOutcome, PushError> {
        if c.command != CommandKind::CancelOrder {
            return Err(PushError::Unsupported(format!(
                "Shopware: {} has no order transition; do it in the Shopware admin",
                c.command.as_str()
            )));
        }
        let found = self
            .call(
                reqwest::Method::POST,
                "/search/order",
                Some(json!({"filter": [{"type": "equals", "field": "orderNumber", "value": c.order_id}],
                            "associations": {"stateMachineState": {}}, "limit": 1})),
            )
            .await?;
        let order = &found["data"][0];
        let Some(id) = order["id"].as_str() else {
            return Err(PushError::Refused(format!(
                "Shopware has no order number {}",
                c.order_id
            )));
        };
        if order["stateMachineState"]["technicalName"] == "cancelled" {
            return Ok(CommandOutcome::AlreadyDone);
        }
        self.call(
            reqwest::Method::POST,
            &format!("/_action/order/{id}/state/cancel"),
            Some(json!({})),
        )
        .await?;
        Ok(CommandOutcome::Done)
    }
}
