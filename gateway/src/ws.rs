//! GraphQL over WebSocket with backpressure, on `actix-ws`.
//!
//! async-graphql's protocol engine (`async_graphql::http::WebSocket`) runs in one task that
//! awaits each outgoing frame: `actix-ws` queues at most `actix_ws`'s 32 frames per socket,
//! so a client that stops reading stops its subscription streams from being polled, their
//! feed receivers fall behind and later catch up from the journal. Memory per slow
//! subscriber is bounded; writers never wait for subscribers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use async_graphql::http::{WebSocket, WebSocketProtocols as Protocols, WsMessage};
use futures::StreamExt;
use tokio::sync::watch;

use crate::auth::{Caller, Gatekeeper};
use crate::metrics::Metrics;
use crate::schema::AssentSchema;

/// Interval of the server's WebSocket pings (keep-alive through proxies and NATs).
pub const WS_PING_INTERVAL_S: u64 = 15;
/// Client messages buffered before the reader stops reading the socket.
pub const WS_INBOUND_BUFFER: usize = 16;

/// What a WebSocket connection needs from the server.
pub(crate) struct WsContext {
    pub(crate) schema: AssentSchema,
    pub(crate) gate: Arc<Gatekeeper>,
    pub(crate) metrics: Arc<Metrics>,
    /// Flips to `true` when the server shuts down: every socket is closed with 1001.
    pub(crate) shutdown: watch::Receiver<bool>,
}

fn negotiate(req: &HttpRequest) -> Option<Protocols> {
    let header = req.headers().get(SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    header
        .split(',')
        .map(str::trim)
        .find_map(|p| Protocols::from_str(p).ok())
}

/// Upgrades the request and serves the GraphQL WebSocket protocol on it.
pub(crate) fn upgrade(ctx: &WsContext, req: &HttpRequest, payload: web::Payload) -> HttpResponse {
    let Some(protocol) = negotiate(req) else {
        return HttpResponse::BadRequest()
            .body("Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws\n");
    };
    let (mut response, session, mut incoming) = match actix_ws::handle(req, payload) {
        Ok(parts) => parts,
        Err(e) => return e.error_response(),
    };
    response.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.sec_websocket_protocol()),
    );

    // Reader: socket → bounded channel of client messages; answers pings.
    let (tx, rx) = futures::channel::mpsc::channel::<Vec<u8>>(WS_INBOUND_BUFFER);
    let mut pong = session.clone();
    let reader = actix_web::rt::spawn(async move {
        let mut tx = tx;
        while let Some(Ok(msg)) = incoming.recv().await {
            let bytes = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Ping(p) => {
                    let _ = pong.pong(&p).await;
                    continue;
                }
                Message::Close(_) => break,
                _ => continue,
            };
            if futures::SinkExt::send(&mut tx, bytes).await.is_err() {
                break;
            }
        }
    });

    // Writer: the protocol engine, one frame at a time.
    let (gate, metrics, mut shutdown) =
        (ctx.gate.clone(), ctx.metrics.clone(), ctx.shutdown.clone());
    let mut engine = WebSocket::new(ctx.schema.clone(), rx, protocol).on_connection_init(
        move |value| async move {
            let header = ["Authorization", "authorization"]
                .iter()
                .find_map(|k| value.get(*k).and_then(|v| v.as_str()).map(str::to_string));
            let caller = gate.caller(header.as_deref()).await;
            if matches!(caller, Caller::Invalid) {
                metrics.auth_failures.inc();
            }
            let mut data = async_graphql::Data::default();
            data.insert(caller);
            Ok(data)
        },
    );
    let mut session = session;
    actix_web::rt::spawn(async move {
        let mut ping = actix_web::rt::time::interval(Duration::from_secs(WS_PING_INTERVAL_S));
        let reason = loop {
            tokio::select! {
                out = engine.next() => match out {
                    Some(WsMessage::Text(text)) => {
                        if session.text(text).await.is_err() {
                            reader.abort();
                            return; // the client went away
                        }
                    }
                    Some(WsMessage::Close(code, msg)) => break CloseReason { code: CloseCode::from(code), description: Some(msg) },
                    None => break CloseReason { code: CloseCode::Normal, description: None },
                },
                _ = ping.tick() => {
                    if session.ping(b"").await.is_err() {
                        reader.abort();
                        return;
                    }
                }
                _ = shutdown.wait_for(|stop| *stop) => {
                    break CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) };
                }
            }
        };
        let _ = session.close(Some(reason)).await;
        // The reader holds a session handle too; the response ends when both are gone.
        reader.abort();
    });
    response
}
