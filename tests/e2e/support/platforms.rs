//! Local stand-ins for the platforms' admin APIs, close to their documented
//! shapes: Shopify Admin GraphQL (`X-Shopify-Access-Token`, `userErrors`,
//! compare-and-set on `inventorySetQuantities`), WooCommerce REST v3 (HTTP
//! Basic, `/products/batch`, orders and refunds) and the Shopware 6 Admin
//! API (OAuth client credentials, `/_action/sync`, order search and state
//! transitions). Each records what it was asked and can be told to fail:
//! a status (429 with `Retry-After`, 503), being down, or acting and then
//! answering too late.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

pub const SHOPIFY_TOKEN: &str = "shpat_e2e_0123456789abcdef";
pub const WOO_KEY: &str = "ck_e2e_0123456789abcdef";
pub const WOO_SECRET: &str = "cs_e2e_0123456789abcdef";
pub const SHOPWARE_ID: &str = "SWIAE2ECLIENTID0123456789";
pub const SHOPWARE_SECRET: &str = "sw-e2e-client-secret-0123456789";
const SHOPWARE_TOKEN: &str = "sw-access-token-e2e";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Shopify,
    Woo,
    Shopware,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// The GraphQL operation (first field of the query) or the path.
    pub op: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After`, if given).
    Status(u16, Option<&'static str>),
    /// Do the work, then answer only after this long.
    ActThenStall(Duration),
    /// Answer 200 with this body instead (Shopify's `THROTTLED` errors).
    Body(Value),
}

#[derive(Debug, Default, Clone)]
pub struct Order {
    pub cancelled: bool,
    pub status: String,
    pub tags: Vec<String>,
    pub refund_notes: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    /// (operation it applies to, or any; the fault), first match used once.
    pub faults: VecDeque<(Option<String>, Fault)>,
    pub down: bool,
    /// Stock per item (Shopify inventory item gid, Woo product id, Shopware product id).
    pub stock: BTreeMap<String, i64>,
    pub prices: BTreeMap<String, String>,
    pub orders: BTreeMap<String, Order>,
}

pub struct Fake {
    pub base: String,
    pub platform: Platform,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start(platform: Platform) -> Fake {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(
                    move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                        let st = st.clone();
                        async move { handle(platform, st, m, u, h, b).await }
                    },
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Fake {
            base: format!("http://{addr}"),
            platform,
            state,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn calls(&self, op: &str) -> Vec<Call> {
        self.with(|s| s.calls.iter().filter(|c| c.op == op).cloned().collect())
    }

    pub fn fail_next(&self, op: Option<&str>, fault: Fault) {
        self.with(|s| s.faults.push_back((op.map(str::to_owned), fault)));
    }

    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    pub fn stock_of(&self, item: &str) -> Option<i64> {
        self.with(|s| s.stock.get(item).copied())
    }

    pub fn price_of(&self, item: &str) -> Option<String> {
        self.with(|s| s.prices.get(item).cloned())
    }

    /// The op names of stock writes on this platform.
    pub fn stock_op(&self) -> &'static str {
        match self.platform {
            Platform::Shopify => "inventorySetQuantities",
            Platform::Woo => "/wp-json/wc/v3/products/batch",
            Platform::Shopware => "/api/_action/sync",
        }
    }
}

async fn handle(
    platform: Platform,
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // Authentication, as each platform does it.
    match platform {
        Platform::Shopify if header("x-shopify-access-token") != SHOPIFY_TOKEN => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"errors": "[API] Invalid API key or access token"})),
            )
                .into_response();
        }
        Platform::Woo => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{WOO_KEY}:{WOO_SECRET}"))
            );
            if header("authorization") != expected {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.", "data": {"status": 401}}))).into_response();
            }
        }
        Platform::Shopware if path == "/api/oauth/token" => {
            let ok = body["grant_type"] == "client_credentials"
                && body["client_id"] == SHOPWARE_ID
                && body["client_secret"] == SHOPWARE_SECRET;
            return if ok {
                axum::Json(json!({"token_type": "Bearer", "expires_in": 600, "access_token": SHOPWARE_TOKEN})).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"errors": [{"code": "9", "title": "Unauthorized"}]})),
                )
                    .into_response()
            };
        }
        Platform::Shopware if header("authorization") != format!("Bearer {SHOPWARE_TOKEN}") => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"errors": [{"status": "401", "title": "Unauthorized"}]})),
            )
                .into_response();
        }
        _ => {}
    }
    let op = match platform {
        Platform::Shopify => graphql_op(body["query"].as_str().unwrap_or("")),
        _ => path.clone(),
    };
    let (answer, stall) = {
        let mut s = state.lock().unwrap();
        s.calls.push(Call {
            at: Instant::now(),
            method: method.to_string(),
            path: path.clone(),
            op: op.clone(),
            body: body.clone(),
        });
        if s.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "upstream down").into_response();
        }
        let fault = s
            .faults
            .iter()
            .position(|(o, _)| o.as_deref().is_none_or(|o| o == op))
            .and_then(|i| s.faults.remove(i))
            .map(|(_, f)| f);
        let stall = match fault {
            Some(Fault::Status(code, retry_after)) => {
                let mut r = (StatusCode::from_u16(code).unwrap(), "fault").into_response();
                if let Some(ra) = retry_after {
                    r.headers_mut().insert("retry-after", ra.parse().unwrap());
                }
                return r;
            }
            Some(Fault::ActThenStall(d)) => Some(d),
            Some(Fault::Body(b)) => return axum::Json(b).into_response(),
            None => None,
        };
        let answer = match platform {
            Platform::Shopify => shopify(&mut s, &op, &body),
            Platform::Woo => woo(&mut s, &method, &path, &body),
            Platform::Shopware => shopware(&mut s, &path, &body),
        };
        (answer, stall)
    };
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    answer
}

/// The first field of a GraphQL document: `mutation X($a: T) { field(...`.
fn graphql_op(query: &str) -> String {
    let inner = query.split_once('{').map_or("", |(_, r)| r).trim_start();
    inner
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_owned()
}

fn shopify(s: &mut State, op: &str, body: &Value) -> Response {
    let vars = &body["variables"];
    let data = match op {
        "inventorySetQuantities" => {
            let qs = vars["input"]["quantities"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let stale: Vec<Value> = qs
                .iter()
                .filter(|q| {
                    let item = q["inventoryItemId"].as_str().unwrap_or("");
                    q["compareQuantity"].as_i64() != Some(s.stock.get(item).copied().unwrap_or(0))
                })
                .map(|q| json!({"code": "COMPARE_QUANTITY_STALE", "field": ["input", "quantities"],
                                "message": format!("The compareQuantity argument no longer matches the persisted quantity for {}.", q["inventoryItemId"])}))
                .collect();
            if stale.is_empty() {
                for q in &qs {
                    s.stock.insert(
                        q["inventoryItemId"].as_str().unwrap().to_owned(),
                        q["quantity"].as_i64().unwrap(),
                    );
                }
                json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": "gid://shopify/InventoryAdjustmentGroup/1"}, "userErrors": []}})
            } else {
                json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": stale}})
            }
        }
        "nodes" => {
            let nodes: Vec<Value> = vars["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| {
                    let q = s.stock.get(id.as_str().unwrap()).copied().unwrap_or(0);
                    json!({"id": id, "inventoryLevel": {"quantities": [{"name": "available", "quantity": q}]}})
                })
                .collect();
            json!({"nodes": nodes})
        }
        "productVariantsBulkUpdate" => {
            for v in vars["variants"].as_array().into_iter().flatten() {
                s.prices.insert(
                    v["id"].as_str().unwrap().to_owned(),
                    v["price"].as_str().unwrap().to_owned(),
                );
            }
            json!({"productVariantsBulkUpdate": {"productVariants": vars["variants"], "userErrors": []}})
        }
        "order" => {
            let id = vars["id"].as_str().unwrap_or("");
            match s.orders.get(id) {
                None => json!({"order": null}),
                Some(o) => {
                    json!({"order": {"id": id, "cancelledAt": o.cancelled.then_some("2026-12-03T12:00:00Z"),
                                            "tags": o.tags, "refunds": o.refund_notes.iter().map(|n| json!({"note": n})).collect::<Vec<_>>()}})
                }
            }
        }
        "orderCancel" => {
            let o = s
                .orders
                .entry(vars["orderId"].as_str().unwrap().to_owned())
                .or_default();
            if o.cancelled {
                json!({"orderCancel": {"job": null, "orderCancelUserErrors": [{"code": "INVALID", "field": ["orderId"], "message": "Cannot cancel an order that has already been canceled"}]}})
            } else {
                o.cancelled = true;
                json!({"orderCancel": {"job": {"id": "gid://shopify/Job/1"}, "orderCancelUserErrors": []}})
            }
        }
        "refundCreate" => {
            let o = s
                .orders
                .entry(vars["input"]["orderId"].as_str().unwrap().to_owned())
                .or_default();
            o.refund_notes
                .push(vars["input"]["note"].as_str().unwrap_or("").to_owned());
            json!({"refundCreate": {"refund": {"id": "gid://shopify/Refund/1"}, "userErrors": []}})
        }
        "tagsAdd" | "tagsRemove" => {
            let o = s
                .orders
                .entry(vars["id"].as_str().unwrap().to_owned())
                .or_default();
            for t in vars["tags"].as_array().into_iter().flatten() {
                let t = t.as_str().unwrap().to_owned();
                o.tags.retain(|x| *x != t);
                if op == "tagsAdd" {
                    o.tags.push(t);
                }
            }
            json!({op: {"userErrors": []}})
        }
        other => {
            return axum::Json(json!({"errors": [{"message": format!("Field '{other}' doesn't exist on type 'Mutation'")}]})).into_response();
        }
    };
    axum::Json(json!({"data": data, "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}}}))
    .into_response()
}

fn woo(s: &mut State, method: &Method, path: &str, body: &Value) -> Response {
    let rest = path.strip_prefix("/wp-json/wc/v3").unwrap_or(path);
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["products", "batch"]) => {
            let mut out = vec![];
            for u in body["update"].as_array().into_iter().flatten() {
                let id = u["id"].to_string();
                if let Some(q) = u["stock_quantity"].as_i64() {
                    s.stock.insert(id.clone(), q);
                }
                if let Some(p) = u["regular_price"].as_str() {
                    s.prices.insert(id.clone(), p.to_owned());
                }
                out.push(json!({"id": u["id"], "stock_quantity": u["stock_quantity"], "regular_price": u["regular_price"]}));
            }
            axum::Json(json!({"update": out})).into_response()
        }
        ("GET", ["orders", id]) => match s.orders.get(*id) {
            Some(o) => axum::Json(json!({"id": id, "status": o.status})).into_response(),
            None => (StatusCode::NOT_FOUND, axum::Json(json!({"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.", "data": {"status": 404}}))).into_response(),
        },
        ("PUT", ["orders", id]) => {
            let o = s.orders.entry((*id).to_owned()).or_default();
            o.status = body["status"].as_str().unwrap_or("").to_owned();
            o.cancelled = o.status == "cancelled";
            axum::Json(json!({"id": id, "status": o.status})).into_response()
        }
        ("GET", ["orders", id, "refunds"]) => {
            let notes = s.orders.get(*id).map(|o| o.refund_notes.clone()).unwrap_or_default();
            axum::Json(Value::Array(notes.into_iter().map(|n| json!({"reason": n})).collect())).into_response()
        }
        ("POST", ["orders", id, "refunds"]) => {
            let o = s.orders.entry((*id).to_owned()).or_default();
            o.refund_notes.push(body["reason"].as_str().unwrap_or("").to_owned());
            (StatusCode::CREATED, axum::Json(json!({"id": 1, "amount": body["amount"], "reason": body["reason"]}))).into_response()
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"code": "rest_no_route", "message": "No route was found matching the URL and request method."}))).into_response(),
    }
}

fn shopware(s: &mut State, path: &str, body: &Value) -> Response {
    if path == "/api/_action/sync" {
        for op in body.as_object().into_iter().flat_map(|o| o.values()) {
            assert_eq!(op["entity"], "product");
            assert_eq!(op["action"], "upsert");
            for p in op["payload"].as_array().into_iter().flatten() {
                let id = p["id"].as_str().unwrap().to_owned();
                if let Some(q) = p["stock"].as_i64() {
                    s.stock.insert(id.clone(), q);
                }
                if let Some(price) = p["price"][0]["gross"].as_f64() {
                    s.prices.insert(id, format!("{price}"));
                }
            }
        }
        return axum::Json(json!({"success": true, "data": {}})).into_response();
    }
    if path == "/api/search/order" {
        let number = body["filter"][0]["value"].as_str().unwrap_or("").to_owned();
        let data: Vec<Value> = s
            .orders
            .get(&number)
            .map(|o| json!({"id": format!("0190{number:0>28}"), "orderNumber": number,
                            "stateMachineState": {"technicalName": if o.cancelled { "cancelled" } else { "open" }}}))
            .into_iter()
            .collect();
        return axum::Json(json!({"total": data.len(), "data": data})).into_response();
    }
    if let Some(rest) = path.strip_prefix("/api/_action/order/")
        && let Some(id) = rest.strip_suffix("/state/cancel")
    {
        let number = id
            .trim_start_matches("0190")
            .trim_start_matches('0')
            .to_owned();
        let o = s.orders.entry(number).or_default();
        o.cancelled = true;
        return axum::Json(json!({"technicalName": "cancelled"})).into_response();
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"errors": [{"status": "404", "title": "Not Found"}]})),
    )
        .into_response()
}
