//! The router, its OpenAPI document and its guard agree: every route the
//! router serves (read from http.rs, so a new one cannot be forgotten) is in
//! docs/openapi.yaml with the same methods, and every route the document
//! marks as admin answers 401 without the bearer token or with a wrong one,
//! and is served (not the fallback) with the right one.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tally_app::Tally;
use tally_app::http::{AppState, router};
use tower::ServiceExt;

const TOKEN: &str = "routes-test-admin-token-0123456789";

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `(METHOD, path)` of every `.route(...)` in http.rs.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(root().join("shared/app/src/http.rs")).unwrap();
    let mut out = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's text, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .unwrap();
        let call = &rest[..end];
        let path = call.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "put", "post", "delete", "patch"] {
            let used = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && call.as_bytes()[i - 1] != b'_'
            });
            if used {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

struct Documented {
    method: String,
    path: String,
    admin: bool,
}

fn routes_in_spec() -> Vec<Documented> {
    let text = std::fs::read_to_string(root().join("docs/openapi.yaml")).unwrap();
    let spec: Value = serde_yaml::from_str(&text).unwrap();
    let global_admin = spec["security"].as_array().is_some_and(|s| !s.is_empty());
    let mut out = vec![];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let admin = match op.get("security") {
                Some(Value::Array(s)) => !s.is_empty(),
                _ => global_admin,
            };
            out.push(Documented {
                method: method.to_uppercase(),
                path: path.clone(),
                admin,
            });
        }
    }
    out
}

#[test]
fn every_route_of_the_router_is_documented_with_its_methods() {
    let served = routes_in_source();
    assert!(
        served.len() >= 20,
        "the parser found too few routes: {served:?}"
    );
    let documented: BTreeSet<(String, String)> = routes_in_spec()
        .into_iter()
        .map(|d| (d.method, d.path))
        .collect();
    assert_eq!(served, documented, "http.rs vs docs/openapi.yaml");
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = if matches!(method, "PUT" | "POST" | "DELETE") {
        "{}"
    } else {
        ""
    };
    let resp = app
        .clone()
        .oneshot(
            req.header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_admin_route_is_closed_without_the_token_and_served_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = tally_embedded::Embedded::open(&dir.path().join("tally.db")).unwrap();
    let app = router(AppState {
        tally: Tally::new(Arc::new(db.clone()), Arc::new(db)),
        admin_token: TOKEN.into(),
        wake: None,
        feed: None,
    });
    let routes = routes_in_spec();
    assert!(routes.iter().filter(|r| r.admin).count() >= 20);
    for r in &routes {
        let path = r
            .path
            .replace("{platform}", "shopify")
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let what = format!("{} {}", r.method, r.path);
        if r.admin {
            for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
                let (status, body) = call(&app, &r.method, &path, token).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{what} with {token:?}: {body}"
                );
            }
        }
        let (status, body) = call(&app, &r.method, &path, Some(TOKEN)).await;
        assert_ne!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what} refused the right token: {body}"
        );
        assert_ne!(
            body["error"]["message"], "route not found",
            "{what} is documented but not served"
        );
        assert!(!status.is_server_error(), "{what}: {status} {body}");
    }
}
