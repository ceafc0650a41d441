//! Opaque identifiers: event ids (defined with the format in `shard::format`, since
//! receipts carry them) and page cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub(crate) use shard::format::{event_id, parse_event_id};

/// An opaque cursor for `kind` holding numbers.
pub(crate) fn cursor(kind: &str, parts: &[i128]) -> String {
    let text: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    B64.encode(format!("{kind}:{}", text.join(":")))
}

/// Inverse of [`cursor`]: the numbers, when the cursor is of `kind` with `n` parts.
pub(crate) fn parse_cursor(kind: &str, n: usize, c: &str) -> Option<Vec<i128>> {
    let text = String::from_utf8(B64.decode(c).ok()?).ok()?;
    let rest = text.strip_prefix(kind)?.strip_prefix(':')?;
    let parts: Option<Vec<i128>> = rest.split(':').map(|p| p.parse().ok()).collect();
    parts.filter(|p| p.len() == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_cursors_round_trip_and_reject_garbage() {
        assert_eq!(parse_event_id(&event_id(3, u64::MAX)), Some((3, u64::MAX)));
        assert_eq!(parse_event_id("ev123"), None);
        assert_eq!(parse_event_id("evXXXXXXXX0000000000000000"), None);
        let c = cursor("h", &[42]);
        assert_eq!(parse_cursor("h", 1, &c), Some(vec![42]));
        assert_eq!(parse_cursor("c", 1, &c), None);
        assert_eq!(parse_cursor("h", 2, &c), None);
        assert_eq!(parse_cursor("h", 1, "!!"), None);
    }
}
