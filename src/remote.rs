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

/// POSTs one GraphQL request; the first GraphQL error becomes `Err` with its code.
pub(crate) fn graphql(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let resp: Value = client
        .post(format!("{}/graphql", url.trim_end_matches('/')))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .map_err(|e| format!("{url}: not a GraphQL response: {e}"))?;
    if let Some(err) = resp["errors"].get(0) {
        return Err(format!(
            "{} ({})",
            err["message"].as_str().unwrap_or("error"),
            err["extensions"]["code"].as_str().unwrap_or("no code")
        ));
    }
    Ok(resp["data"].clone())
}
