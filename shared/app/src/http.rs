//! The one Router: webhooks, canonical events and the admin API. `tally
//! serve` serves it with hyper; the api and ingest Lambdas serve it with
//! lambda_http. Handlers only extract, call a step, and shape the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tally_connectors::Headers;
use tally_core::catalog::Platform;
use tally_core::ports::{ChangeFeed, queues};
use tokio::sync::Notify;

use crate::ingest::{Ingested, MAX_BODY};
use crate::{AppError, Tally};

#[derive(Clone)]
pub struct AppState {
    pub tally: Tally,
    /// The bearer token of the admin API.
    pub admin_token: Arc<str>,
    /// Woken after each accepted delivery (the local worker waits on it).
    pub wake: Option<Arc<Notify>>,
    /// The local change feed, so health can say whether repricing is
    /// caught up (AWS follows its stream instead).
    pub feed: Option<Arc<dyn ChangeFeed>>,
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/v1/sources/{source}", put(put_source).get(get_source))
        .route("/v1/locations/{location}", put(put_location))
        .route("/v1/products", get(list_products))
        .route("/v1/products/{sku}", put(put_product).get(get_product))
        .route("/v1/stock", get(list_stock))
        .route("/v1/stock/{sku}", get(get_stock))
        .route("/v1/prices", get(list_prices))
        .route("/v1/audit", get(get_audit))
        .route("/v1/quarantine", get(get_quarantine))
        .route("/v1/quarantine/{id}/replay", post(replay_quarantined))
        .route(
            "/v1/quarantine/{id}",
            axum::routing::delete(discard_quarantined),
        )
        .route("/v1/drift", get(get_drift))
        .route("/v1/alerts", get(get_alerts))
        .route("/v1/channels", get(get_channels))
        .route("/v1/channels/{channel}/resync", post(resync_channel))
        .route("/v1/prices/{sku}", get(get_price))
        .route("/v1/audit/{id}/revert", post(revert))
        .route("/v1/actions", get(get_actions))
        .route("/metrics", get(get_metrics))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/actions/{id}/approve", post(approve_action))
        .route("/v1/actions/{id}/reject", post(reject_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/", get(console))
        .route("/healthz", get(healthz))
        .route("/events/{source}", post(post_events))
        .route("/webhooks/{platform}/{source}", post(post_webhook))
        .merge(admin)
        .fallback(|| async { AppError::NotFound("route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time, so the token cannot be guessed byte by byte.
    if presented.as_bytes().ct_eq(s.admin_token.as_bytes()).into() {
        next.run(req).await
    } else {
        AppError::Unauthorized("a valid Authorization: Bearer token is required".into())
            .into_response()
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(MAX_BODY)
        } else {
            AppError::BadRequest(e.body_text())
        }
    })
}

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, AppError> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("body is not valid JSON: {e}")))
}

fn lowercase_headers(h: &HeaderMap) -> Headers {
    h.iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// 200 while the store and queue answer, with what is still in flight
/// (tests and `tally replay` wait for all of it to reach zero).
async fn healthz(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    let inbound = s.tally.queue.depth(queues::INBOUND).await?;
    let mut body = json!({"status": "ok", "inbound_pending": inbound});
    if let Some(feed) = &s.feed {
        let signals = s.tally.queue.depth(queues::SIGNAL).await?;
        let cursor = feed.cursor(crate::worker::REPRICE_CONSUMER).await?;
        let changes = feed.changes_after(cursor, 1).await?.len();
        body["signal_pending"] = json!(signals);
        // Not part of `idle`: a push waiting out a channel's Retry-After
        // is not work the stack still owes.
        body["outbound_pending"] = json!(s.tally.queue.depth(queues::OUTBOUND).await?);
        body["changes_pending"] = json!(changes);
        body["idle"] = json!(inbound == 0 && signals == 0 && changes == 0);
    }
    Ok(Json(body))
}

async fn accept(
    s: &AppState,
    platform: Platform,
    source: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let body = body_bytes(body)?;
    let ingested = s
        .tally
        .ingest(platform, source, &lowercase_headers(headers), &body)
        .await?;
    match ingested {
        Ingested::Queued(n) => {
            if let Some(w) = &s.wake {
                w.notify_one();
            }
            Ok((StatusCode::ACCEPTED, Json(json!({"accepted": n}))))
        }
        // WooCommerce saves a webhook only if its ping gets exactly 200.
        Ingested::Ping => Ok((StatusCode::OK, Json(json!({"accepted": 0})))),
    }
}

async fn post_events(
    State(s): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    accept(&s, Platform::Tally, &source, &headers, body).await
}

async fn post_webhook(
    State(s): State<AppState>,
    Path((platform, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let platform = match Platform::parse(&platform) {
        Ok(Platform::Tally) | Err(_) => {
            return Err(AppError::NotFound(format!("webhook platform {platform:?}")));
        }
        Ok(p) => p,
    };
    accept(&s, platform, &source, &headers, body).await
}

async fn put_source(
    State(s): State<AppState>,
    Path(source): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.put_source(&source, &json_body(body)?).await?))
}

async fn get_source(
    State(s): State<AppState>,
    Path(source): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.get_source(&source).await?))
}

async fn put_location(
    State(s): State<AppState>,
    Path(location): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        s.tally.put_location(&location, &json_body(body)?).await?,
    ))
}

async fn put_product(
    State(s): State<AppState>,
    Path(sku): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.put_product(&sku, &json_body(body)?).await?))
}

async fn get_product(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.get_product(&sku).await?))
}

async fn get_stock(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.stock_view(&sku).await?))
}

async fn list_products(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.product_list().await?))
}

async fn list_stock(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.stock_list().await?))
}

async fn list_prices(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.price_list().await?))
}

/// One entity's history (`entity=`), or the activity feed of every entity,
/// optionally narrowed to a workflow, a SKU or an actor.
async fn get_audit(
    State(s): State<AppState>,
    Query(q): Query<crate::admin::AuditQuery>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.audit(&q).await?))
}

/// The ops console: one self-contained page. It holds no data and needs no
/// token to load; it asks the admin API with the token a person types in.
async fn console() -> Response {
    use axum::http::header;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline and same-origin; nothing may frame it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self'; form-action 'none'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        console_page(),
    )
        .into_response()
}

const CONSOLE: &str = include_str!("console.html");

/// Debug builds read the page from disk on every request, so the console
/// can be worked on without rebuilding; release builds serve the copy
/// compiled in.
#[cfg(debug_assertions)]
fn console_page() -> std::borrow::Cow<'static, str> {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/console.html"))
        .map(std::borrow::Cow::Owned)
        .unwrap_or(std::borrow::Cow::Borrowed(CONSOLE))
}

#[cfg(not(debug_assertions))]
fn console_page() -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(CONSOLE)
}

async fn get_quarantine(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.quarantine_list().await?))
}

/// An optional JSON body: empty means `{}`.
fn optional_json(body: Result<Bytes, BytesRejection>) -> Result<Value, AppError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("body is not valid JSON: {e}")))
}

async fn replay_quarantined(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        s.tally
            .replay_quarantined(&id, &optional_json(body)?)
            .await?,
    ))
}

async fn discard_quarantined(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        s.tally
            .discard_quarantined(&id, &optional_json(body)?)
            .await?,
    ))
}

async fn get_drift(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.drift().await?))
}

async fn get_alerts(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.alerts().await?))
}

async fn get_channels(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.channels_view().await?))
}

async fn resync_channel(
    State(s): State<AppState>,
    Path(channel): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let queued = s.tally.resync(&channel, &optional_json(body)?).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

async fn get_price(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.price_view(&sku).await?))
}

async fn revert(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.revert(&id, &optional_json(body)?).await?))
}

#[derive(Deserialize)]
struct ActionsQuery {
    status: Option<String>,
}

async fn get_actions(
    State(s): State<AppState>,
    Query(q): Query<ActionsQuery>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.actions(q.status.as_deref()).await?))
}

async fn get_action(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(s.tally.action_view(&id).await?))
}

async fn approve_action(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        s.tally
            .decide_action(&id, true, &optional_json(body)?)
            .await?,
    ))
}

async fn reject_action(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        s.tally
            .decide_action(&id, false, &optional_json(body)?)
            .await?,
    ))
}

async fn get_metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.tally.metrics.render(),
    )
}
