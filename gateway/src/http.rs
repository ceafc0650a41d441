//! The HTTP surface: routes, body limits, error envelopes, health, metrics, the offline
//! GraphiQL page, and the process lifecycle of `assent serve`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Response};
use futures::StreamExt;

use crate::auth::policy::for_caller;
use crate::auth::{Caller, Gatekeeper, KeyStore, Refusal, Role};
use crate::bulk::BulkError;
use crate::checkpoints::Checkpointer;
use crate::config::ServeConfig;
use crate::errors::{Code, server_error};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::query_cache::{Prepared, QueryCache};
use crate::schema::{AppState, AssentSchema, build};

/// Largest request body accepted (a full batch of 1,000 events with large TCF strings fits).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Most operations in one batched (JSON array) request.
pub const MAX_BATCH_OPERATIONS: usize = 16;
/// Request bodies above this size count as large (a batch of more than ≈ 100 events).
pub const LARGE_REQUEST_BYTES: usize = 64 * 1024;
/// Default of `--large-request-budget-bytes`: the body bytes of large requests (body above
/// [`LARGE_REQUEST_BYTES`]) read, decoded and executed at once; a request whose body does not
/// fit in what is left waits its turn (first come, first served) before its body is read. A
/// large request holds its events two to three times over until its commit is durable (the
/// body while decoding, the decoded events, the encoded entries and the transaction's pages),
/// so the budget bounds the server's memory under batch load: two bodies of the largest size,
/// or ≈ 80 ordinary 1,000-event batches. It replaced a limit of two large requests at once,
/// taken after the body was read: that limit held no body being read (sixteen senders of
/// 15 MB batches took the server to 429 MiB), and kept ordinary batches waiting while the two
/// admitted ones waited for their commits, leaving a sixth of the CPU idle
/// (docs/benchmarks.md, session 26).
pub const LARGE_REQUEST_BUDGET_BYTES: usize = 2 * MAX_REQUEST_BYTES;
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_TIMEOUT_S: u64 = 30;
/// Default of `--body-read-timeout-ms`: how long a request body may take to arrive (twice
/// for a chunked large body: before its turn and after). A large request holds its share of
/// the budget while it is read, and a sender slower than ≈ 0.5 MB/s must not hold it
/// longer. Beyond it: HTTP 408, `BAD_USER_INPUT`.
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;

struct Server {
    schema: AssentSchema,
    /// The same schema in `ValidationMode::Fast`, for query texts the cache has seen pass
    /// strict validation.
    fast_schema: AssentSchema,
    /// Input-object fields of the schema, to refuse unknown ones on the fast path.
    shapes: crate::input_shapes::InputShapes,
    state: Arc<AppState>,
    gate: Arc<Gatekeeper>,
    ws: crate::ws::WsContext,
    queries: crate::query_cache::QueryCache,
    /// Body bytes of large requests in flight, one permit a byte
    /// (`--large-request-budget-bytes`, default [`LARGE_REQUEST_BUDGET_BYTES`]).
    large: tokio::sync::Semaphore,
    /// The size of that budget: a body larger than all of it takes all of it.
    large_budget_bytes: u32,
    /// How long a body may take to arrive (`--body-read-timeout-ms`).
    body_read_timeout_ms: u64,
}

/// On a fresh data directory, creates the first admin key and writes it to
/// `<data-dir>/admin-token` (mode 0600); or registers `ASSENT_ADMIN_TOKEN`.
fn bootstrap_admin(
    keys: &KeyStore,
    config: &ServeConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(token) = &config.admin_token {
        keys.ensure_supplied_admin(token).map_err(|e| e.message())?;
        tracing::info!("admin token supplied by ASSENT_ADMIN_TOKEN");
        return Ok(());
    }
    if !keys.is_empty() {
        return Ok(());
    }
    let (_, token) = keys
        .create_key(None, Role::Admin, "bootstrap")
        .map_err(|e| e.message())?;
    let path = config.data_dir.join("admin-token");
    crate::ledger::write_private(&path, format!("{token}\n").as_bytes())?;
    tracing::info!(path = %path.display(), "created the first admin key; its token is in this file (mode 0600)");
    Ok(())
}

/// Authenticates the request and applies the rate limit; `Err` is the response to send.
async fn admit(server: &Server, req: &HttpRequest) -> Result<Caller, HttpResponse> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = server.gate.caller(header).await;
    if matches!(caller, Caller::Invalid) {
        server.state.metrics.auth_failures.inc();
    }
    match server.gate.admit(&caller) {
        Ok(()) => Ok(caller),
        Err(Refusal::RateLimited { retry_after_ms }) => {
            server
                .state
                .metrics
                .errors
                .with_label_values(&[Code::RateLimited.as_str()])
                .inc();
            let mut err = server_error(
                Code::RateLimited,
                format!("rate limit of this key exceeded; retry after {retry_after_ms} ms"),
            );
            err.extensions
                .get_or_insert_with(Default::default)
                .set("retryAfterMs", retry_after_ms);
            Err(HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after_ms.div_ceil(1000).to_string()))
                .json(Response::from_errors(vec![err])))
        }
    }
}

/// Runs `assent serve` until SIGINT/SIGTERM: opens the ledger, serves HTTP, issues
/// checkpoints, then stops accepting, finishes in-flight work and closes the shards.
pub async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::new();
    let feeds = Arc::new(crate::feed::Feeds::new(config.feed_capacity));
    let observer = {
        let (feeds, listened) = (feeds.clone(), feeds.clone());
        let count = metrics.commit_observer();
        shard::engine::CommitObserver::with_entries(
            move |report: shard::engine::CommitReport| {
                feeds.publish(&report);
                count(report);
            },
            move |shard_id| listened.has_subscribers(shard_id),
        )
    };
    let ledger = Arc::new(Ledger::open(&config, Some(observer))?);
    let checkpoints = Arc::new(Checkpointer::open(ledger.clone()).map_err(|e| e.message())?);
    let keys = Arc::new(KeyStore::open(ledger.meta.clone()).map_err(|e| e.message())?);
    bootstrap_admin(&keys, &config)?;
    let keys_for_retention = keys.clone();
    let gate = Arc::new(Gatekeeper::new(keys.clone(), config.rate_limit_per_second));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        ledger: ledger.clone(),
        checkpoints: checkpoints.clone(),
        metrics,
        keys,
        feeds,
    });
    let schema = build(Some(state.clone()));
    let ws = crate::ws::WsContext {
        schema: crate::schema::build_ws(state.clone()),
        gate: gate.clone(),
        metrics: state.metrics.clone(),
        shutdown: shutdown_rx,
    };
    // At least one byte, and at most what a u32 counts (the semaphore's `acquire_many`).
    let large_budget_bytes =
        u32::try_from(config.large_request_budget_bytes.max(1)).unwrap_or(u32::MAX);
    let server = web::Data::new(Server {
        shapes: crate::input_shapes::InputShapes::from_sdl(&schema.sdl()),
        fast_schema: crate::schema::build_with(
            Some(state.clone()),
            async_graphql::ValidationMode::Fast,
        ),
        schema,
        state,
        gate,
        ws,
        queries: Default::default(),
        large: tokio::sync::Semaphore::new(large_budget_bytes as usize),
        large_budget_bytes,
        body_read_timeout_ms: config.body_read_timeout_ms,
    });

    let http = HttpServer::new({
        let server = server.clone();
        move || {
            App::new()
                .app_data(server.clone())
                .route("/graphql", web::post().to(graphql_post))
                .route("/graphql", web::get().to(graphql_get))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics_text))
                .route("/.well-known/assent/keys", web::get().to(well_known_keys))
                .route("/", web::get().to(graphiql))
        }
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
    // Signals are handled below, so that WebSocket subscribers get a close frame first.
    .disable_signals()
    .bind(config.listen)?;
    for addr in http.addrs() {
        tracing::info!(data_dir = %config.data_dir.display(), shards = ledger.shards.len(), ledger = %ledger.name, "listening on http://{addr}");
    }
    let running = http.run();
    let handle = running.handle();
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: closing subscriptions, finishing in-flight requests");
        let _ = shutdown_tx.send(true);
        handle.stop(true).await;
    });
    let mut timers = vec![actix_web::rt::spawn(checkpoint_loop(
        checkpoints.clone(),
        config.checkpoint_interval_ms,
    ))];
    if config.scrub_interval_ms > 0 {
        timers.push(actix_web::rt::spawn(crate::privacy::scrub_loop(
            ledger.clone(),
            config.scrub_interval_ms,
        )));
    }
    if config.retention_interval_ms > 0 {
        timers.push(actix_web::rt::spawn(crate::privacy::retention_loop(
            ledger.clone(),
            keys_for_retention,
            config.retention_interval_ms,
        )));
    }
    running.await?;
    for timer in timers {
        timer.abort();
    }
    tracing::info!("HTTP stopped; closing shards");
    if let Err(e) = checkpoints.issue_if_changed().await {
        tracing::warn!(error = %e.message(), "final checkpoint failed");
    }
    drop(server);
    drop(checkpoints);
    // Aborted timers and closing sockets let go of the ledger a little later: wait for
    // them, so that every file (shards and ledger.redb) is shut down cleanly; a file left
    // open at exit needs a repair (a scan of the whole file) at its next open.
    match sole_owner(ledger).await {
        Ok(ledger) => {
            for shard in ledger.shards {
                shard.stop().await;
            }
        }
        Err(ledger) => {
            tracing::warn!(
                "tasks still hold the ledger after {SHUTDOWN_RELEASE_WAIT_MS} ms; closing the shards under them (ledger.redb may need a repair at the next start)"
            );
            for shard in &ledger.shards {
                shard.close().await;
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long shutdown waits for aborted tasks and closing sockets to let go of the ledger.
pub const SHUTDOWN_RELEASE_WAIT_MS: u64 = 5_000;

/// The ledger itself once nothing else holds it, or the shared handle after
/// [`SHUTDOWN_RELEASE_WAIT_MS`].
async fn sole_owner(mut ledger: Arc<Ledger>) -> Result<Ledger, Arc<Ledger>> {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(SHUTDOWN_RELEASE_WAIT_MS);
    loop {
        match Arc::try_unwrap(ledger) {
            Ok(owned) => return Ok(owned),
            Err(shared) if std::time::Instant::now() < deadline => {
                ledger = shared;
                actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(shared) => return Err(shared),
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Runs `task` every `interval_ms` (at least 10 ms) until aborted: the server's timers.
pub(crate) async fn every<F, Fut>(interval_ms: u64, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(interval_ms.max(10)));
    loop {
        tick.tick().await;
        task().await;
    }
}

async fn checkpoint_loop(checkpoints: Arc<Checkpointer>, interval_ms: u64) {
    let failures = std::cell::RefCell::new(RepeatedFailures::default());
    every(interval_ms, || async {
        let outcome = checkpoints.issue_if_changed().await;
        let mut failures = failures.borrow_mut();
        match outcome {
            Ok(_) => failures.cleared(),
            Err(e) => {
                let message = e.message();
                if let Some(repeats) = failures.failed(&message, std::time::Instant::now()) {
                    tracing::error!(error = %message, repeats, "periodic checkpoint failed");
                }
            }
        }
    })
    .await
}

/// How often a periodic task's same failure is logged again (with how many times it
/// recurred): a shard whose storage failed makes every checkpoint fail until a restart,
/// once a second by default.
const REPEATED_FAILURE_LOG_MS: u64 = 60_000;

/// Which failures of a periodic task to log: a new one at once, the same one again at
/// most every `REPEATED_FAILURE_LOG_MS`.
#[derive(Default)]
struct RepeatedFailures {
    /// The last failure logged, and when.
    last: Option<(String, std::time::Instant)>,
    /// Times it recurred since it was last logged.
    repeats: u64,
}

impl RepeatedFailures {
    /// Notes a failure at `now`; `Some(repeats since the last log)` when it is to be logged.
    fn failed(&mut self, message: &str, now: std::time::Instant) -> Option<u64> {
        let every = Duration::from_millis(REPEATED_FAILURE_LOG_MS);
        if let Some((last, at)) = &self.last
            && last == message
            && now.duration_since(*at) < every
        {
            self.repeats += 1;
            return None;
        }
        let repeats = std::mem::take(&mut self.repeats);
        self.last = Some((message.to_string(), now));
        Some(repeats)
    }

    /// Notes a success: the next failure is logged at once.
    fn cleared(&mut self) {
        *self = RepeatedFailures::default();
    }
}

fn error_body(status: StatusCode, code: Code, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(Response::from_errors(vec![server_error(code, message)]))
}

/// Every error leaves with a code: those async-graphql raises itself (syntax, validation,
/// depth, complexity, input coercion) are the client's: `BAD_USER_INPUT`.
fn finish(server: &Server, mut resp: BatchResponse) -> HttpResponse {
    let responses: Vec<&mut Response> = match &mut resp {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(rs) => rs.iter_mut().collect(),
    };
    for r in responses {
        for e in &mut r.errors {
            let ext = e.extensions.get_or_insert_with(Default::default);
            if ext.get("code").is_none() {
                ext.set("code", Code::BadUserInput.as_str());
            }
            if let Some(async_graphql::Value::String(code)) = ext.get("code") {
                server.state.metrics.errors.with_label_values(&[code]).inc();
            }
        }
    }
    HttpResponse::Ok().json(resp)
}

/// A large request's share of the byte budget, held until its answer is built.
type Turn<'a> = tokio::sync::SemaphorePermit<'a>;

/// Reads a request body of at most [`MAX_REQUEST_BYTES`], taking a large request's turn
/// (its bytes of [`LARGE_REQUEST_BUDGET_BYTES`]) before the bytes beyond
/// [`LARGE_REQUEST_BYTES`] are held: at the start when `Content-Length` declares a large
/// body, else (a chunked body) when the body grows past that size, for the largest body
/// then. A declared length above the limit is refused before anything is read; reading
/// takes at most `--body-read-timeout-ms` ([`BODY_READ_TIMEOUT_MS`]) before the turn and as
/// much after it, so that a slow sender cannot hold the budget.
async fn read_body<'a>(
    server: &'a Server,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Result<(web::Bytes, Option<Turn<'a>>), HttpResponse> {
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(too_large(server));
    }
    let mut turn = match declared {
        Some(n) if n > LARGE_REQUEST_BYTES => Some(large_turn(server, n).await),
        _ => None,
    };
    let mut body = body_buffer::take();
    let first_part = match turn {
        Some(_) => MAX_REQUEST_BYTES,
        None => LARGE_REQUEST_BYTES,
    };
    read_until(server, payload, &mut body, first_part).await?;
    if body.len() > LARGE_REQUEST_BYTES && turn.is_none() {
        turn = Some(large_turn(server, MAX_REQUEST_BYTES).await);
        read_until(server, payload, &mut body, MAX_REQUEST_BYTES).await?;
    }
    Ok((body.freeze(), turn))
}

/// Reusable body buffers, a few per HTTP worker thread. A batch's body (≈ 400 KB for
/// 1,000 events) read into fresh memory had its pages faulted in afresh by each request:
/// the allocator hands freed pages back to the OS after `ALLOCATOR_PURGE_DELAY_MS` (10 ms,
/// for the server's RSS bound), and a worker's next large body usually comes later than
/// that. A worker keeps the buffers of its last bodies, up to [`KEPT_BODIES_PER_WORKER`]
/// of at most [`POOLED_BODY_MAX_BYTES`] each, once the request is answered (until then the
/// bulk path's events borrow the body). Measured under `batch` (docs/benchmarks.md,
/// session 27): page faults 330 → 195 a request, server CPU −7 %.
mod body_buffer {
    use actix_web::web::{Bytes, BytesMut};
    use std::cell::RefCell;

    /// Largest buffer a worker keeps between requests: two full batches of ordinary
    /// events; a larger body's buffer is freed as before.
    pub(super) const POOLED_BODY_MAX_BYTES: usize = 1 << 20;

    /// How many buffers a worker keeps: as many batches as one worker usually has in
    /// flight (8 connections on 2 workers). At most `KEPT_BODIES_PER_WORKER ×
    /// POOLED_BODY_MAX_BYTES` (4 MiB) per HTTP worker (one per core) is held while idle.
    pub(super) const KEPT_BODIES_PER_WORKER: usize = 4;

    thread_local! {
        static KEPT: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer: one this worker kept, if it has one.
    pub(super) fn take() -> BytesMut {
        KEPT.with(|kept| kept.borrow_mut().pop())
            .unwrap_or_default()
    }

    /// Keeps `body`'s buffer for this worker's next requests, if nothing else holds a part
    /// of it, it is not too large and the worker does not keep enough already.
    pub(super) fn give_back(body: Bytes) {
        let Ok(mut buffer) = body.try_into_mut() else {
            return;
        };
        if buffer.capacity() <= POOLED_BODY_MAX_BYTES {
            buffer.clear();
            KEPT.with(|kept| {
                let mut kept = kept.borrow_mut();
                if kept.len() < KEPT_BODIES_PER_WORKER {
                    kept.push(buffer);
                }
            });
        }
    }
}

/// Appends chunks of `payload` to `body` until the body ends or exceeds `until` bytes
/// (never more than [`MAX_REQUEST_BYTES`]), within the server's body read timeout.
async fn read_until(
    server: &Server,
    payload: &mut web::Payload,
    body: &mut web::BytesMut,
    until: usize,
) -> Result<(), HttpResponse> {
    let read = async {
        while body.len() <= until {
            let Some(chunk) = payload.next().await else {
                return Ok(());
            };
            let Ok(chunk) = chunk else {
                let msg = "the request body could not be read";
                return Err(error_body(StatusCode::BAD_REQUEST, Code::BadUserInput, msg));
            };
            if body.len() + chunk.len() > MAX_REQUEST_BYTES {
                return Err(too_large(server));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let timeout_ms = server.body_read_timeout_ms;
    match tokio::time::timeout(Duration::from_millis(timeout_ms), read).await {
        Ok(done) => done,
        Err(_) => {
            let msg = format!(
                "the request body did not arrive within {timeout_ms} ms; send it faster or in smaller requests"
            );
            Err(error_body(
                StatusCode::REQUEST_TIMEOUT,
                Code::BadUserInput,
                &msg,
            ))
        }
    }
}

/// The body length a request's `Content-Length` header declares, if it has a valid one
/// (a chunked body has none).
fn declared_length(req: &HttpRequest) -> Option<usize> {
    let value = req.headers().get(actix_web::http::header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// Waits for `bytes` of the large-request budget (all of it when `bytes` exceeds it).
async fn large_turn(server: &Server, bytes: usize) -> Turn<'_> {
    let permits = u32::try_from(bytes)
        .unwrap_or(u32::MAX)
        .min(server.large_budget_bytes);
    let turn = server.large.acquire_many(permits).await;
    turn.expect("the semaphore is never closed")
}

/// `PAYLOAD_TOO_LARGE` (HTTP 413) for a body above [`MAX_REQUEST_BYTES`], counted.
fn too_large(server: &Server) -> HttpResponse {
    let code = Code::PayloadTooLarge;
    server
        .state
        .metrics
        .errors
        .with_label_values(&[code.as_str()])
        .inc();
    let msg =
        format!("request body exceeds {MAX_REQUEST_BYTES} bytes; send fewer events per request");
    error_body(StatusCode::PAYLOAD_TOO_LARGE, code, &msg)
}

async fn graphql_post(
    server: web::Data<Server>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    server.state.metrics.requests.inc();
    let caller = match admit(&server, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (body, _turn) = match read_body(&server, &req, &mut payload).await {
        Ok(read) => read,
        Err(resp) => return resp,
    };
    // The bulk path's events borrow the body until the request is executed.
    let kept = body.clone();
    let resp = answer(&server, caller, body).await;
    body_buffer::give_back(kept);
    resp
}

/// Parses and executes a request whose body was read, and builds its answer.
async fn answer(server: &Server, caller: Caller, body: web::Bytes) -> HttpResponse {
    let request: BatchRequest = match parse_body(body, &server.queries, &server.state.metrics) {
        Ok(r) => r,
        Err(BulkError::Malformed(e)) => {
            let msg = format!("the body is not a GraphQL request in JSON: {e}");
            return error_body(StatusCode::BAD_REQUEST, Code::BadUserInput, &msg);
        }
        Err(BulkError::Variable(detail)) => {
            let msg = format!("invalid variable value: {detail}");
            let resp = Response::from_errors(vec![server_error(Code::BadUserInput, &msg)]);
            return finish(server, BatchResponse::Single(resp));
        }
    };
    if let BatchRequest::Batch(ops) = &request
        && ops.len() > MAX_BATCH_OPERATIONS
    {
        let msg = format!("at most {MAX_BATCH_OPERATIONS} operations per batched request");
        return error_body(StatusCode::BAD_REQUEST, Code::BadUserInput, &msg);
    }
    let resp = match request {
        BatchRequest::Single(r) => {
            BatchResponse::Single(execute(server, for_caller(r, caller)).await)
        }
        BatchRequest::Batch(rs) => {
            // One after the other, as async-graphql's own `execute_batch` does.
            let mut resps = Vec::with_capacity(rs.len());
            for r in rs {
                resps.push(execute(server, for_caller(r, caller.clone())).await);
            }
            BatchResponse::Batch(resps)
        }
    };
    finish(server, resp)
}

/// Executes one request: strictly validated the first time its text is seen, and without
/// repeating the document rules once the text has passed them (`query_cache`).
async fn execute(server: &Server, mut request: async_graphql::Request) -> Response {
    match server.queries.prepare(&mut request, Some(&server.shapes)) {
        Prepared::Validated => server.fast_schema.execute(request).await,
        Prepared::Refused(detail) => {
            let msg = format!("invalid variable value: {detail}");
            Response::from_errors(vec![server_error(Code::BadUserInput, &msg)])
        }
        Prepared::Parsed => {
            let text = request.query.clone();
            let resp = server.schema.execute(request).await;
            if resp.errors.is_empty() {
                server.queries.mark_validated(&text);
            }
            resp
        }
        Prepared::NotCached => server.schema.execute(request).await,
    }
}

/// Parses one request or a JSON array of them. Deserialising `BatchRequest` directly goes
/// through serde's untagged-enum buffering, which copies the whole body once more (measured
/// as a large share of a 1,000-event batch's CPU); looking at the first byte avoids it. A
/// single request whose body names `ConsentEventInput` (only an operation declaring an event
/// variable can use the bulk path) takes it (`crate::bulk`): its event variables are decoded
/// straight into events; any other goes to async-graphql's parser unchanged.
fn parse_body(
    body: web::Bytes,
    queries: &QueryCache,
    metrics: &crate::metrics::Metrics,
) -> Result<BatchRequest, BulkError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<async_graphql::Request>>(&body)
            .map(BatchRequest::Batch)
            .map_err(BulkError::Malformed),
        _ if memchr::memmem::find(&body, b"ConsentEventInput").is_none() => {
            serde_json::from_slice::<async_graphql::Request>(&body)
                .map(BatchRequest::Single)
                .map_err(BulkError::Malformed)
        }
        _ => crate::bulk::parse_request(body, queries).map(|(request, decoded_events)| {
            metrics.bulk_decoded_events.inc_by(decoded_events);
            BatchRequest::Single(request)
        }),
    }
}

async fn graphql_get(
    server: web::Data<Server>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if req
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return crate::ws::upgrade(&server.ws, &req, payload);
    }
    server.state.metrics.requests.inc();
    let caller = match admit(&server, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let request = match async_graphql::http::parse_query_string(req.query_string()) {
        Ok(r) => r,
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                &format!("bad query string: {e}"),
            );
        }
    };
    if let Ok(doc) = async_graphql::parser::parse_query(&request.query)
        && doc
            .operations
            .iter()
            .any(|(_, op)| op.node.ty != OperationType::Query)
    {
        return error_body(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadUserInput,
            "mutations must be sent with POST",
        );
    }
    let resp = execute(&server, for_caller(request, caller)).await;
    finish(&server, BatchResponse::Single(resp))
}

/// Liveness: 503 once a shard's storage failed (it refuses writes until a restart, which
/// is what a supervisor such as Kubernetes does on a failing liveness probe).
async fn healthz(server: web::Data<Server>) -> HttpResponse {
    let failed: Vec<String> = server
        .state
        .ledger
        .shards
        .iter()
        .filter_map(|s| s.storage_failure())
        .map(|e| e.to_string())
        .collect();
    if failed.is_empty() {
        return HttpResponse::Ok().body("ok\n");
    }
    HttpResponse::ServiceUnavailable().body(failed.join("\n") + "\n")
}

async fn readyz(server: web::Data<Server>) -> HttpResponse {
    for s in &server.state.ledger.shards {
        if let Err(e) = s.head().await {
            return HttpResponse::ServiceUnavailable().body(format!(
                "shard {} not ready: {}\n",
                s.shard_id(),
                e.message()
            ));
        }
    }
    HttpResponse::Ok().body("ready\n")
}

async fn metrics_text(server: web::Data<Server>) -> HttpResponse {
    let m = &server.state.metrics;
    for s in &server.state.ledger.shards {
        m.queue_depth
            .with_label_values(&[&s.shard_id().to_string()])
            .set(s.queue_depth());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}

async fn well_known_keys(server: web::Data<Server>) -> HttpResponse {
    let l = &server.state.ledger;
    let key = crate::schema::public_key(&l.name, &l.signing_key.verifying_key());
    HttpResponse::Ok().json(serde_json::json!({ "keys": [key] }))
}

async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(GRAPHIQL_HTML)
}

/// A self-contained query page: no external scripts, styles or fonts, so it works on
/// networks without internet access.
pub(crate) const GRAPHIQL_HTML: &str = include_str!("graphiql.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_reuses_the_buffer_of_an_answered_body_and_only_a_free_small_one() {
        // Proves: a body's buffer comes back (the same memory, empty) once nothing else
        // holds it; a buffer still shared, one above POOLED_BODY_MAX_BYTES, or one beyond
        // KEPT_BODIES_PER_WORKER is not kept.
        while body_buffer::take().capacity() > 0 {}
        let mut first = body_buffer::take();
        first.extend_from_slice(&[b'x'; 1000]);
        let body = first.freeze();
        let held = body.clone();
        body_buffer::give_back(body);
        assert_eq!(
            body_buffer::take().capacity(),
            0,
            "a shared buffer was kept"
        );
        drop(held);

        let mut second = body_buffer::take();
        second.extend_from_slice(&[b'y'; 1000]);
        let memory_2 = second.as_ptr();
        body_buffer::give_back(second.freeze());
        let taken = body_buffer::take();
        assert!(
            taken.is_empty() && taken.capacity() >= 1000,
            "kept empty, with its room"
        );
        assert_eq!(
            taken.as_ptr(),
            memory_2,
            "the kept buffer is the one given back"
        );

        let big = web::BytesMut::with_capacity(body_buffer::POOLED_BODY_MAX_BYTES + 1);
        body_buffer::give_back(big.freeze());
        assert_eq!(body_buffer::take().capacity(), 0, "a large buffer was kept");

        for _ in 0..body_buffer::KEPT_BODIES_PER_WORKER + 2 {
            body_buffer::give_back(web::BytesMut::with_capacity(64).freeze());
        }
        let kept = std::iter::from_fn(|| Some(body_buffer::take()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, body_buffer::KEPT_BODIES_PER_WORKER);
    }

    #[test]
    fn a_repeated_failure_is_logged_once_a_minute_with_its_count() {
        // Proves: the first failure logs, the same one within a minute does not, a minute
        // later it logs with the count, another message or a success starts over.
        let mut f = RepeatedFailures::default();
        let t0 = std::time::Instant::now();
        assert_eq!(f.failed("disk full", t0), Some(0));
        assert_eq!(f.failed("disk full", t0 + Duration::from_secs(1)), None);
        assert_eq!(f.failed("disk full", t0 + Duration::from_secs(2)), None);
        assert_eq!(f.failed("disk full", t0 + Duration::from_secs(61)), Some(2));
        assert_eq!(f.failed("other", t0 + Duration::from_secs(62)), Some(0));
        f.cleared();
        assert_eq!(f.failed("other", t0 + Duration::from_secs(63)), Some(0));
    }
}
