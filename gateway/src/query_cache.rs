//! Parsed GraphQL documents of repeated query texts.
//!
//! Clients send the same few query texts over and over with different variables; parsing
//! one (async-graphql's pest parser) was a tenth of a `recordConsent` request's server CPU
//! (docs/benchmarks.md). The parsed document depends on the text alone, so it is cached by
//! text and handed to async-graphql with `Request::set_parsed_query`; validation and
//! every limit still run on each request.

use async_graphql::parser::types::ExecutableDocument;
use dashmap::DashMap;

/// Query texts longer than this are parsed every time (not cached).
pub const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct query texts kept; when full, the cache is emptied and refills with what is in
/// use (bounded memory without bookkeeping per hit).
pub const MAX_CACHED_QUERIES: usize = 512;

/// Query text → parsed document.
#[derive(Default)]
pub(crate) struct QueryCache {
    parsed: DashMap<String, ExecutableDocument>,
}

impl QueryCache {
    /// Gives `request` its parsed document, from the cache or by parsing (and caching) it.
    /// A text that does not parse is left to async-graphql, which reports the error.
    pub(crate) fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        if let Some(doc) = self.parsed.get(&request.query) {
            request.set_parsed_query(doc.clone());
            return;
        }
        let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
            return;
        };
        if self.parsed.len() >= MAX_CACHED_QUERIES {
            self.parsed.clear();
        }
        self.parsed.insert(request.query.clone(), doc.clone());
        request.set_parsed_query(doc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_document_is_the_parse_of_its_text_and_the_cache_stays_bounded() {
        // Proves: a hit hands over the same document a fresh parse gives, bad texts are
        // not cached, and the number of entries never exceeds the limit.
        let cache = QueryCache::default();
        let text = "query($c: ID!) { customer(id: $c) { id } }";
        for _ in 0..2 {
            let mut r = async_graphql::Request::new(text);
            cache.prepare(&mut r);
            let fresh = async_graphql::parser::parse_query(text).unwrap();
            assert_eq!(
                format!("{:?}", r.parsed_query().unwrap()),
                format!("{fresh:?}")
            );
        }
        let mut bad = async_graphql::Request::new("query {");
        cache.prepare(&mut bad);
        assert!(!cache.parsed.contains_key("query {"));
        for i in 0..(MAX_CACHED_QUERIES * 2) {
            let mut r = async_graphql::Request::new(format!("query {{ f{i} }}"));
            cache.prepare(&mut r);
            assert!(cache.parsed.len() <= MAX_CACHED_QUERIES);
        }
    }
}
