//! HTTP layer: the router, handlers, and the JSON error type. All logic lives in
//! [`crate::state::Server`]; handlers run it on blocking threads (it fsyncs).
//!
//! Routes (see the wire protocol in the crate docs):
//!
//! ```text
//! POST /v1/join      -> {client_id, token}
//! GET  /v1/round     -> RoundConfig (bearer token; selects the client if a slot is free)
//! GET  /v1/model     -> global model, application/octet-stream safetensors (bearer token)
//! POST /v1/update    <- update safetensors body (bearer token) -> {accepted: true, ...}
//! GET  /v1/status    -> Status
//! GET  /v1/metrics   -> Metrics
//!
//! With --secure-aggregation (bearer token; ?session= is the SecAgg session id of the round):
//! POST /v1/secagg/keys     <- AdvertiseKeys (JSON)          -> SecAggAck
//! GET  /v1/secagg/keys?session=ID    -> KeyDirectory          (425 while the phase is open)
//! POST /v1/secagg/shares   <- ShareKeys (JSON)              -> SecAggAck
//! GET  /v1/secagg/shares?session=ID  -> RoutedShares          (425 while the phase is open)
//! POST /v1/secagg/masked   <- masked input (binary)         -> SecAggAck
//! GET  /v1/secagg/unmask?session=ID  -> UnmaskRequest         (425 while the phase is open)
//! POST /v1/secagg/unmask   <- UnmaskResponse (JSON)         -> SecAggAck
//! GET  /v1/secagg/result?session=ID  -> SecAggResult          (425 while the session runs)
//! ```

use crate::protocol::SecAggAck;
use crate::state::{Error, Server};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

/// Shared state of the router.
pub type AppState = Arc<Server>;

/// Response header carrying the global version on `GET /v1/model`.
pub const HEADER_VERSION: &str = "x-websr-global-version";
/// Response header carrying the model's SHA-256 on `GET /v1/model`.
pub const HEADER_SHA256: &str = "x-websr-model-sha256";

/// Every error answer: a status and `{"error": "..."}`. 5xx answers carry no detail.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after_s: Option<f64>,
}

impl AppError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Update(_) | Error::NumExamples { .. } => StatusCode::BAD_REQUEST,
            Error::NormTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Stale { .. }
            | Error::TooStale { .. }
            | Error::FutureVersion { .. }
            | Error::Duplicate { .. }
            | Error::Finished(_) => StatusCode::CONFLICT,
            Error::NotSelected { .. } => StatusCode::FORBIDDEN,
            Error::TooManyClients => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManyJoins { retry_after_s } => {
                return Self {
                    retry_after_s: Some(*retry_after_s),
                    ..Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                }
            }
            Error::TokenExpired => StatusCode::UNAUTHORIZED,
            Error::SecAggOff => StatusCode::NOT_FOUND,
            Error::SecAggOnly | Error::SecAggConflict(_) => StatusCode::CONFLICT,
            Error::SecAggInvalid(_) => StatusCode::BAD_REQUEST,
            Error::SecAggForbidden(_) => StatusCode::FORBIDDEN,
            Error::SecAggGone(_) => StatusCode::GONE,
            Error::SecAggNotYet(_) => {
                return Self {
                    retry_after_s: Some(1.0),
                    ..Self::new(StatusCode::TOO_EARLY, e.to_string())
                }
            }
            Error::Config(_) | Error::Corrupt(_) | Error::Store(_) | Error::Strategy(_) => {
                tracing::error!("internal error: {e}");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
            }
        };
        Self::new(status, e.to_string())
    }
}

impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is larger than the server's limit (--max-body-bytes)".to_string()
        } else {
            r.body_text()
        };
        Self::new(status, message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after_s {
            // Whole seconds, rounded up, as HTTP wants.
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(s.ceil().max(1.0) as u64),
            );
        }
        res
    }
}

type ApiResult<T> = Result<T, AppError>;

/// The bearer token, if the request has one.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

/// Runs blocking server work (it may fsync) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(AppError::from),
        Err(e) => {
            tracing::error!("handler task failed: {e}");
            Err(AppError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error",
            ))
        }
    }
}

/// The aggregator's router. The body limit and the CORS origins come from the server's flags.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes();
    let cors = cors_layer(state.allowed_origins());
    let timeout = TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs_f64(state.config().request_timeout_secs),
    );
    Router::new()
        .route("/v1/join", post(join))
        .route("/v1/round", get(round))
        .route("/v1/model", get(model))
        .route("/v1/update", post(update))
        .route("/v1/status", get(status))
        .route("/v1/metrics", get(metrics))
        .route("/v1/secagg/keys", post(secagg_keys).get(secagg_directory))
        .route("/v1/secagg/shares", post(secagg_shares).get(secagg_routed))
        .route("/v1/secagg/masked", post(secagg_masked))
        .route(
            "/v1/secagg/unmask",
            post(secagg_unmask).get(secagg_unmask_request),
        )
        .route("/v1/secagg/result", get(secagg_result))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(timeout)
        .layer(cors)
        .with_state(state)
}

/// CORS for the web app's training page: the listed origins may call every route with a
/// bearer token and read the model's version headers. No origin listed: no CORS headers.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Validated by `ServerConfig::validate`.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            HeaderName::from_static(HEADER_VERSION),
            HeaderName::from_static(HEADER_SHA256),
            header::ETAG,
        ])
}

async fn join(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let joined = blocking(move || s.join()).await?;
    Ok((StatusCode::CREATED, Json(joined)))
}

async fn round(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    let token = bearer(&headers);
    Ok(Json(
        blocking(move || s.round_config(token.as_deref())).await?,
    ))
}

async fn model(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token = bearer(&headers);
    let (version, sha, bytes) = blocking(move || s.model(token.as_deref())).await?;
    let mut res = Bytes::from(bytes.as_ref().clone()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_VERSION, HeaderValue::from(version));
    h.insert(
        HEADER_SHA256,
        HeaderValue::from_str(&sha).expect("hex is a valid header"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{sha}\"")).expect("hex is a valid header"),
    );
    Ok(res)
}

async fn update(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let token = bearer(&headers);
    // Refuse a missing or unknown token before reporting anything about the body.
    let (s2, t2) = (s.clone(), token.clone());
    blocking(move || {
        s2.client_id(t2.as_deref())
            .inspect_err(|e| s2.count_rejection(e))
    })
    .await?;
    let body = body?;
    Ok(Json(
        blocking(move || s.submit(token.as_deref(), &body)).await?,
    ))
}

/// `?session=ID` of the SecAgg GET routes.
#[derive(serde::Deserialize)]
struct SessionQuery {
    session: u64,
}

fn session_query(q: Result<Query<SessionQuery>, QueryRejection>) -> ApiResult<u64> {
    q.map(|Query(q)| q.session).map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "expected ?session=<the SecAgg session id of the round>",
        )
    })
}

/// A server method taking one SecAgg message.
type SecAggPost = fn(&Server, Option<&str>, &[u8]) -> Result<SecAggAck, Error>;

/// A SecAgg POST: the token is checked before the body is read (as for updates).
async fn secagg_post(
    s: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    f: SecAggPost,
) -> ApiResult<Json<SecAggAck>> {
    let token = bearer(&headers);
    let (s2, t2) = (s.clone(), token.clone());
    blocking(move || s2.client_id(t2.as_deref())).await?;
    let body = body?;
    Ok(Json(
        blocking(move || f(&s, token.as_deref(), &body)).await?,
    ))
}

async fn secagg_keys(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SecAggAck>> {
    secagg_post(s, headers, body, Server::secagg_keys).await
}

async fn secagg_shares(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SecAggAck>> {
    secagg_post(s, headers, body, Server::secagg_shares).await
}

async fn secagg_masked(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SecAggAck>> {
    secagg_post(s, headers, body, Server::secagg_masked).await
}

async fn secagg_unmask(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<SecAggAck>> {
    secagg_post(s, headers, body, Server::secagg_unmask).await
}

/// A SecAgg GET of session `?session=ID`.
async fn secagg_get<T: serde::Serialize + Send + 'static>(
    s: AppState,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, QueryRejection>,
    f: fn(&Server, Option<&str>, u64) -> Result<T, Error>,
) -> ApiResult<Json<T>> {
    let token = bearer(&headers);
    let id = session_query(q)?;
    Ok(Json(blocking(move || f(&s, token.as_deref(), id)).await?))
}

async fn secagg_directory(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    secagg_get(s, headers, q, Server::secagg_directory).await
}

async fn secagg_routed(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    secagg_get(s, headers, q, Server::secagg_routed).await
}

async fn secagg_unmask_request(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    secagg_get(s, headers, q, Server::secagg_unmask_request).await
}

async fn secagg_result(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    secagg_get(s, headers, q, Server::secagg_result).await
}

// The server's lock may be held through an fsync or an aggregation: wait for it off the
// async threads.
async fn status(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(blocking(move || Ok(s.status())).await?))
}

async fn metrics(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(blocking(move || Ok(s.metrics())).await?))
}

async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "no such route; see GET /v1/status")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// Runs [`Server::tick`] every `period` so rounds close at their deadline without traffic.
pub fn spawn_deadline_ticker(
    state: AppState,
    period: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let s = state.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.tick()).await {
                tracing::error!("deadline tick failed: {e}");
            }
        }
    })
}
