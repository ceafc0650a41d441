//! Parsed GraphQL documents of repeated query texts.
//!
//! Clients send the same few query texts over and over with different variables; parsing
//! one (async-graphql's pest parser) was a tenth of a `recordConsent` request's server CPU
//! (docs/benchmarks.md). The parsed document depends on the text alone, so it is cached by
//! text and handed to async-graphql with `Request::set_parsed_query`. Validation of the
//! document (known fields, argument and variable types, …) was another tenth, and again
//! depends on the text alone: once a request with a text has run without any error under
//! strict validation, later ones with the same text run under `ValidationMode::Fast`,
//! which keeps the depth, complexity and directive limits; their variable values are
//! type-checked when arguments are read, before any resolver runs.

use async_graphql::parser::types::ExecutableDocument;
use dashmap::DashMap;

use crate::input_shapes::InputShapes;

/// Query texts longer than this are parsed every time (not cached).
pub const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct query texts kept; when full, the cache is emptied and refills with what is in
/// use (bounded memory without bookkeeping per hit).
pub const MAX_CACHED_QUERIES: usize = 512;

/// What [`QueryCache::prepare`] did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The text is cached and some earlier request with it passed strict validation: its
    /// document rules need not run again (its variables were checked for unknown
    /// input-object fields, `input_shapes`).
    Validated,
    /// The text passed strict validation before, but a variable holds an input-object
    /// field its type does not define: refuse the request with this detail.
    Refused(String),
    /// The text is cached but has not yet passed strict validation.
    Parsed,
    /// The text is too long or does not parse: left to async-graphql.
    NotCached,
}

/// Query text → parsed document, and whether the text has passed strict validation.
#[derive(Default)]
pub(crate) struct QueryCache {
    parsed: DashMap<String, (ExecutableDocument, bool)>,
}

impl QueryCache {
    /// Gives `request` its parsed document, from the cache or by parsing (and caching) it,
    /// and says whether its text has passed strict validation before; if so, checks its
    /// variables against `shapes` first (when given). A text that does not parse is left
    /// to async-graphql, which reports the error.
    pub(crate) fn prepare(
        &self,
        request: &mut async_graphql::Request,
        shapes: Option<&InputShapes>,
    ) -> Prepared {
        if request.query.len() > MAX_CACHED_QUERY_BYTES {
            return Prepared::NotCached;
        }
        if let Some(hit) = self.parsed.get(&request.query) {
            let (doc, validated) = hit.value();
            if !*validated {
                request.set_parsed_query(doc.clone());
                return Prepared::Parsed;
            }
            let op = request.operation_name.as_deref();
            if let Some(Err(detail)) = shapes.map(|s| s.check(doc, op, &request.variables)) {
                return Prepared::Refused(detail);
            }
            request.set_parsed_query(doc.clone());
            return Prepared::Validated;
        }
        let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
            return Prepared::NotCached;
        };
        if self.parsed.len() >= MAX_CACHED_QUERIES {
            self.parsed.clear();
        }
        self.parsed
            .insert(request.query.clone(), (doc.clone(), false));
        request.set_parsed_query(doc);
        Prepared::Parsed
    }

    /// Runs `f` on the cached document of `text`, if the text is cached (texts are cached
    /// by [`QueryCache::prepare`]).
    pub(crate) fn with_document<R>(
        &self,
        text: &str,
        f: impl FnOnce(&ExecutableDocument) -> R,
    ) -> Option<R> {
        self.parsed.get(text).map(|hit| f(&hit.value().0))
    }

    /// Records that a request with this text passed strict validation (and ran without
    /// any error). Document rules depend on the text alone; variable values are checked
    /// again on every request when arguments are read.
    pub(crate) fn mark_validated(&self, text: &str) {
        if let Some(mut hit) = self.parsed.get_mut(text) {
            hit.value_mut().1 = true;
        }
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
            assert_eq!(
                cache.prepare(&mut r, None),
                Prepared::Parsed,
                "not yet validated"
            );
            let fresh = async_graphql::parser::parse_query(text).unwrap();
            assert_eq!(
                format!("{:?}", r.parsed_query().unwrap()),
                format!("{fresh:?}")
            );
        }
        let mut bad = async_graphql::Request::new("query {");
        assert_eq!(cache.prepare(&mut bad, None), Prepared::NotCached);
        assert!(!cache.parsed.contains_key("query {"));
        for i in 0..(MAX_CACHED_QUERIES * 2) {
            let mut r = async_graphql::Request::new(format!("query {{ f{i} }}"));
            let _ = cache.prepare(&mut r, None);
            assert!(cache.parsed.len() <= MAX_CACHED_QUERIES);
        }
    }
}
