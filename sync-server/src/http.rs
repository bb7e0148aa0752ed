//! The HTTP interface (axum): the route table (also checked against `openapi.json` by the
//! tests), handlers, the protocol-version check, body limits, timeouts, metrics and logs.
//! Database work runs on the blocking pool; handlers stay thin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use kunjung_protocol::{
    Health, LoginRequest, LoginResponse, CONTENT_TYPE_CBOR, ENCODING_ZSTD, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION, VERSION_HEADER,
};
use uuid::Uuid;

use crate::auth::{self, LoginLimiter, User};
use crate::db::Db;
use crate::error::ServerError;
use crate::{report, sync};

/// The OpenAPI description, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route: method and path. The router is built from this table and the tests check
/// it against `openapi.json` both ways.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/login"),
    ("POST", "/v1/logout"),
    ("GET", "/v1/me"),
    ("POST", "/v1/sync"),
    ("GET", "/v1/households/{id}"),
    ("GET", "/v1/admin/users"),
    ("GET", "/v1/reports/monthly"),
    ("GET", "/v1/reports/duplicates"),
    ("GET", "/metrics"),
];

/// Largest sync request body (compressed).
pub const SYNC_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Largest JSON body.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// Shared server state.
pub struct AppState {
    pub db: Db,
    pub server_id: String,
    pub limiter: LoginLimiter,
    pub metrics: Metrics,
    pub timeout: Duration,
    /// Materialised household documents kept between pushes.
    pub docs: sync::DocCache,
    /// Households written by fast-path pushes, for the background compactor.
    pub dirty: sync::Dirty,
    /// SHA-256 of the scrape token `/metrics` also accepts besides an admin's token
    /// (env `KUNJUNG_METRICS_TOKEN`, at least 16 characters; unset: admins only).
    pub metrics_token: Option<Vec<u8>>,
    /// Syncs answered at once ([`sync_concurrency`]); the others wait their turn here, in
    /// order, without a thread of their own.
    pub syncs: tokio::sync::Semaphore,
}

/// How many syncs run at once (env `KUNJUNG_SYNC_CONCURRENCY`; default twice the SQLite
/// read connections, or the PostgreSQL pool's size). A sync holds a thread of the blocking
/// pool from its read transaction to its commit: 200 devices syncing at once made 200
/// threads taking turns on two cores, each preempting the others mid-transaction, with a
/// read connection or the writer's turn held meanwhile. With a bound the rest wait here,
/// in order and without a thread.
fn sync_concurrency(db: &Db) -> usize {
    std::env::var("KUNJUNG_SYNC_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| db.default_concurrency())
}

/// The scrape token from `KUNJUNG_METRICS_TOKEN`, hashed; shorter than 16 characters it is
/// ignored (a warning is logged), so a weak token never opens the metrics.
fn metrics_token_from_env() -> Option<Vec<u8>> {
    let t = std::env::var("KUNJUNG_METRICS_TOKEN").ok()?;
    let t = t.trim();
    if t.len() < 16 {
        tracing::warn!("KUNJUNG_METRICS_TOKEN ignored: shorter than 16 characters");
        return None;
    }
    use sha2::Digest;
    Some(sha2::Sha256::digest(t.as_bytes()).to_vec())
}

impl AppState {
    pub fn new(db: Db) -> Result<Arc<AppState>, crate::db::DbError> {
        let limiter = LoginLimiter::default();
        let syncs = tokio::sync::Semaphore::new(sync_concurrency(&db));
        // Lockouts survive a restart: the failures of the last window, from the audit log.
        db.read(|t| limiter.restore(t))?;
        Ok(Arc::new(AppState {
            server_id: db.server_id()?,
            db,
            limiter,
            metrics: Metrics::default(),
            timeout: Duration::from_secs(60),
            docs: sync::DocCache::default(),
            metrics_token: metrics_token_from_env(),
            dirty: Default::default(),
            syncs,
        }))
    }
}

/// (method, route, status) → (count, seconds).
type RequestCounts = BTreeMap<(String, String, u16), (u64, f64)>;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestCounts>,
    pub changes_pushed: AtomicU64,
    pub changes_pulled: AtomicU64,
    pub rejected: AtomicU64,
    pub login_failures: AtomicU64,
}

fn handler(method: &str, path: &str) -> MethodRouter<Arc<AppState>> {
    match (method, path) {
        ("GET", "/v1/health") => get(health),
        ("GET", "/v1/openapi.json") => get(openapi),
        ("POST", "/v1/login") => post(login),
        ("POST", "/v1/logout") => post(logout),
        ("GET", "/v1/me") => get(me),
        ("POST", "/v1/sync") => post(sync_handler),
        ("GET", "/v1/households/{id}") => get(household),
        ("GET", "/v1/admin/users") => get(admin_users),
        ("GET", "/v1/reports/monthly") => get(report_monthly),
        ("GET", "/v1/reports/duplicates") => get(report_duplicates),
        ("GET", "/metrics") => get(metrics),
        _ => unreachable!("route {method} {path} has no handler"),
    }
}

/// The application router.
pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    for (m, p) in ROUTES {
        r = r.route(p, handler(m, p));
    }
    r.fallback(|| async { ServerError::NotFound("alamat ini (this path)".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(kunjung_protocol::ErrorBody {
                    code: "method_not_allowed".into(),
                    message: "metode HTTP ini tidak didukung di sini (method not allowed)".into(),
                }),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Timeout, metrics and the protocol header on every answer.
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let mut resp = match tokio::time::timeout(st.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ServerError::Timeout.into_response(),
    };
    resp.headers_mut().insert(
        VERSION_HEADER,
        HeaderValue::from_str(&PROTOCOL_VERSION.to_string())
            .unwrap_or(HeaderValue::from_static("1")),
    );
    let secs = start.elapsed().as_secs_f64();
    let mut m = st
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let e = m
        .entry((method, route, resp.status().as_u16()))
        .or_insert((0, 0.0));
    e.0 += 1;
    e.1 += secs;
    resp
}

fn check_version(headers: &HeaderMap) -> Result<(), ServerError> {
    let got = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if got < MIN_PROTOCOL_VERSION {
        return Err(ServerError::ClientTooOld { got });
    }
    Ok(())
}

fn bearer(headers: &HeaderMap) -> Result<String, ServerError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty() && t.len() < 200)
        .ok_or(ServerError::Unauthorized)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ServerError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ServerError::TooLarge)
}

/// Runs database work on the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
}

fn authenticate(st: &AppState, token: &str) -> Result<User, ServerError> {
    st.db.read(|t| auth::authenticate(t, token))
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        protocol: PROTOCOL_VERSION,
        min_protocol: MIN_PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        backend: st.db.backend().into(),
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The client's address: the peer's, or with `KUNJUNG_TRUST_PROXY=1` (behind a reverse
/// proxy on loopback) the last `X-Forwarded-For` entry the proxy added.
fn client_address(req: &Request) -> Option<std::net::IpAddr> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if std::env::var("KUNJUNG_TRUST_PROXY").as_deref() == Ok("1") {
        let fwd = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        return fwd.or(peer);
    }
    peer
}

async fn login(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<LoginResponse>, ServerError> {
    let addr = client_address(&req);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    check_version(&headers)?;
    let bytes = read_body(body, JSON_BODY_LIMIT).await?;
    let req: LoginRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ServerError::BadRequest(format!("login: {e}")))?;
    if req.device_id.is_empty() || req.device_id.len() > 128 {
        return Err(ServerError::BadRequest(
            "device_id wajib diisi (device_id is required)".into(),
        ));
    }
    st.limiter.check(&req.username, addr)?;
    blocking(&st, move |st| {
        match st.db.tx(false, |t| {
            auth::login(t, &req.username, &req.password, &req.device_id)
        }) {
            Ok((token, expires_at_ms, a)) => {
                st.limiter.succeeded(&req.username);
                crate::audit::record(
                    &st.db,
                    &[crate::audit::Event::new(
                        &a.username,
                        &req.device_id,
                        "login",
                        None,
                        "",
                    )],
                );
                tracing::info!(user = %a.username, device = %req.device_id, "login");
                Ok(Json(LoginResponse {
                    token,
                    expires_at_ms,
                    scope: kunjung_protocol::Scope::for_role(a.role, &a.posyandu, &a.areas),
                    username: a.username,
                    role: a.role,
                    server_id: st.server_id.clone(),
                }))
            }
            Err(e) => {
                if matches!(e, ServerError::InvalidCredentials) {
                    st.limiter.failed(&req.username, addr);
                    st.metrics.login_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(user = %req.username, address = ?addr, "login failed");
                    let name = auth::username_key(&req.username);
                    // The address lets a restarted server rebuild its lockouts.
                    let detail = match addr {
                        Some(a) => format!("{} from {a}", e.code()),
                        None => e.code().to_string(),
                    };
                    crate::audit::record(
                        &st.db,
                        &[crate::audit::Event::new(
                            &name,
                            &req.device_id,
                            "login_failed",
                            None,
                            &detail,
                        )],
                    );
                }
                Err(e)
            }
        }
    })
    .await
}

async fn logout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<StatusCode, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    blocking(&st, move |st| {
        authenticate(st, &token)?;
        st.db.tx(false, |t| auth::revoke_token(t, &token))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn me(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    blocking(&st, move |st| {
        let u = authenticate(st, &token)?;
        Ok(Json(serde_json::json!({
            "username": u.username,
            "role": u.role,
            "scope": u.scope(),
            "device_id": u.device,
        })))
    })
    .await
}

async fn sync_handler(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with(CONTENT_TYPE_CBOR) {
        return Err(ServerError::UnsupportedMedia(CONTENT_TYPE_CBOR));
    }
    let bytes = read_body(body, SYNC_BODY_LIMIT).await?;
    let _turn = st
        .syncs
        .acquire()
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let out = blocking(&st, move |st| {
        // Token check, decoding, push and pull, audit events (see sync::sync_request).
        let (user, resp, pushed, pulled) = sync::sync_request(&st.db, &st.docs, &token, &bytes)?;
        st.dirty.note(&pushed.written);
        let m = &st.metrics;
        m.changes_pushed
            .fetch_add(pushed.stored as u64, Ordering::Relaxed);
        m.changes_pulled.fetch_add(pulled as u64, Ordering::Relaxed);
        m.rejected
            .fetch_add(pushed.rejected.len() as u64, Ordering::Relaxed);
        tracing::info!(
            user = %user.username,
            device = %user.device,
            stored = pushed.stored,
            acked = pushed.acked.len(),
            rejected = pushed.rejected.len(),
            pulled,
            drops = resp.drops.len(),
            more = resp.more,
            "sync"
        );
        kunjung_protocol::encode_answer(&resp).map_err(|e| ServerError::Internal(e.to_string()))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, CONTENT_TYPE_CBOR),
            (header::CONTENT_ENCODING, ENCODING_ZSTD),
        ],
        out,
    )
        .into_response())
}

async fn household(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    // A path that does not decode (e.g. invalid UTF-8) is a JSON 400 like any bad id.
    let id = id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or_else(|| ServerError::BadRequest("id rumah tangga (household id)".into()))?;
    blocking(&st, move |st| {
        let u = authenticate(st, &token)?;
        let view = st.db.read(|t| sync::household_json(t, &u, id))?;
        crate::audit::record(
            &st.db,
            &[crate::audit::Event::by(&u, "read", Some(id), "GET")],
        );
        Ok(Json(view))
    })
    .await
}

async fn admin_users(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<auth::Account>>, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    blocking(&st, move |st| {
        let u = authenticate(st, &token)?;
        if u.role != kunjung_protocol::Role::Admin {
            return Err(ServerError::Forbidden("hanya admin (admin only)".into()));
        }
        crate::audit::record(
            &st.db,
            &[crate::audit::Event::by(&u, "list_users", None, "")],
        );
        st.db.read(auth::list_accounts).map(Json)
    })
    .await
}

type QueryMap = Result<Query<BTreeMap<String, String>>, QueryRejection>;

fn query_map(q: QueryMap) -> Result<BTreeMap<String, String>, ServerError> {
    q.map(|Query(m)| m)
        .map_err(|e| ServerError::BadRequest(format!("parameter: {e}")))
}

async fn report_monthly(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: QueryMap,
) -> Result<Json<report::MonthlyRecap>, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    let q = query_map(q)?;
    blocking(&st, move |st| {
        let u = authenticate(st, &token)?;
        let q = report::MonthlyQuery::parse(&q)?;
        let today = chrono::Utc::now().date_naive();
        let (recap, stats) = report::monthly(&st.db, &u, &q, today)?;
        tracing::info!(user = %u.username, month = %q.month, households = stats.households,
            refreshed = stats.refreshed, "report");
        Ok(Json(recap))
    })
    .await
}

async fn report_duplicates(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: QueryMap,
) -> Result<Json<Vec<report::DuplicatePair>>, ServerError> {
    check_version(&headers)?;
    let token = bearer(&headers)?;
    let q = query_map(q)?;
    blocking(&st, move |st| {
        let u = authenticate(st, &token)?;
        if let Some(k) = q.keys().find(|k| k.as_str() != "area") {
            return Err(ServerError::BadRequest(format!(
                "parameter {k} tidak dikenal (unknown parameter)"
            )));
        }
        let (pairs, _) = report::duplicates(&st.db, &u, q.get("area").map(String::as_str))?;
        Ok(Json(pairs))
    })
    .await
}

/// `/metrics` answers an admin's token or the configured scrape token (no protocol header:
/// scrapers do not send one); anything else is 401, another role 403.
async fn metrics(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let token = bearer(&headers)?;
    let (seq, households, users) = blocking(&st, move |st| {
        use sha2::Digest;
        let scrape = st.metrics_token.as_deref().is_some_and(|want| {
            // Equal-length digests compared without an early exit.
            let got = sha2::Sha256::digest(token.as_bytes());
            got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !scrape {
            let u = authenticate(st, &token)?;
            if u.role != kunjung_protocol::Role::Admin {
                return Err(ServerError::Forbidden(
                    "metrik hanya untuk admin (metrics: admin only)".into(),
                ));
            }
        }
        st.db.read(sync::counts)
    })
    .await?;
    let mut out = String::new();
    out.push_str("# HELP kunjung_http_requests_total HTTP requests by method, route and status.\n# TYPE kunjung_http_requests_total counter\n");
    let reqs = st
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((m, r, s), (n, _)) in &reqs {
        out.push_str(&format!(
            "kunjung_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP kunjung_http_request_seconds_sum Time spent answering, by route.\n# TYPE kunjung_http_request_seconds_sum counter\n");
    for ((m, r, s), (_, secs)) in &reqs {
        out.push_str(&format!(
            "kunjung_http_request_seconds_sum{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {secs}\n"
        ));
    }
    let m = &st.metrics;
    let (batches, pieces) = st.db.group().stats();
    for (name, help, v) in [
        (
            "kunjung_changes_pushed_total",
            "Changes stored from pushes.",
            m.changes_pushed.load(Ordering::Relaxed),
        ),
        (
            "kunjung_changes_pulled_total",
            "Changes and snapshots sent to devices.",
            m.changes_pulled.load(Ordering::Relaxed),
        ),
        (
            "kunjung_push_rejected_total",
            "Pushed households or changes rejected.",
            m.rejected.load(Ordering::Relaxed),
        ),
        (
            "kunjung_login_failures_total",
            "Failed logins.",
            m.login_failures.load(Ordering::Relaxed),
        ),
        (
            "kunjung_write_batches_total",
            "Write transactions of the group commit (each holds one or more pieces).",
            batches,
        ),
        (
            "kunjung_write_pieces_total",
            "Pieces of write work (pushes, audit events, snapshots) in those transactions.",
            pieces,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    for (name, help, v) in [
        (
            "kunjung_change_sequence",
            "Highest change sequence number.",
            seq,
        ),
        (
            "kunjung_households",
            "Households on the server.",
            households,
        ),
        ("kunjung_users", "User accounts.", users),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// Serves until ctrl-c. Prints `listening on http://ADDR` once bound.
pub async fn serve(state: Arc<AppState>, listen: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    state.db.spawn_checkpointer();
    if let Err(e) = crate::group::spawn_writer(state.clone(), |s| &s.db) {
        tracing::warn!(error = %e, "no dedicated writer thread");
    }
    sync::spawn_compactor(state.clone());
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
