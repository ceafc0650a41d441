//! What the commands that talk to a running server share: the API key (from a file or an
//! environment variable, never from argv where `ps` shows it) and one GraphQL call.

use std::path::Path;

use serde_json::{Value, json};

/// The key in `file`, else in the environment variable `env`; `Err` says where to put it.
pub(crate) fn token(file: Option<&Path>, env: &str, what: &str) -> Result<String, String> {
    match (file, std::env::var(env)) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("{}: {e}", f.display())),
        (None, Ok(t)) if !t.is_empty() => Ok(t),
        _ => Err(format!("give {what} in {env} or --token-file")),
    }
}

/// Times a rate-limited request is sent again before the caller gives up.
pub(crate) const RATE_LIMITED_RETRIES: u32 = 30;
/// Longest wait before one retry, whatever the server asks (`retryAfterMs`).
pub(crate) const MAX_RETRY_WAIT_MS: u64 = 10_000;

/// POSTs one GraphQL request; the first GraphQL error becomes `Err` with its code. A
/// `RATE_LIMITED` answer is waited out (as long as its `retryAfterMs` says, at most
/// `MAX_RETRY_WAIT_MS`) and sent again, up to `RATE_LIMITED_RETRIES` times: a long export
/// or monitor run with a rate-limited key slows down instead of failing half-way.
pub(crate) fn graphql(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, RemoteError> {
    let body = json!({ "query": query, "variables": variables });
    let mut retries = 0;
    loop {
        let resp: Value = client
            .post(format!("{}/graphql", url.trim_end_matches('/')))
            .bearer_auth(token)
            .json(&body)
            .send()
            .map_err(|e| RemoteError::transport(format!("{url}: {e}")))?
            .json()
            .map_err(|e| RemoteError::transport(format!("{url}: not a GraphQL response: {e}")))?;
        let Some(err) = resp["errors"].get(0) else {
            return Ok(resp["data"].clone());
        };
        let code = err["extensions"]["code"].as_str().unwrap_or("no code");
        if code == "RATE_LIMITED" && retries < RATE_LIMITED_RETRIES {
            let wait_ms = err["extensions"]["retryAfterMs"].as_u64().unwrap_or(1_000);
            std::thread::sleep(std::time::Duration::from_millis(
                wait_ms.min(MAX_RETRY_WAIT_MS),
            ));
            retries += 1;
            continue;
        }
        return Err(RemoteError {
            code: Some(code.to_string()),
            message: err["message"].as_str().unwrap_or("error").to_string(),
        });
    }
}

/// Why a call to a running server failed.
#[derive(Debug)]
pub(crate) struct RemoteError {
    /// The first GraphQL error's `extensions.code`; `None` when no answer came (network,
    /// or not a GraphQL response).
    pub(crate) code: Option<String>,
    /// What the server or the transport said.
    pub(crate) message: String,
}

impl RemoteError {
    fn transport(message: String) -> RemoteError {
        RemoteError {
            code: None,
            message,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}
