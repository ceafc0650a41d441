//! Small objects resolved without async-graphql's per-field machinery. async-graphql
//! resolves each field of each object as a boxed future, polled through a `FuturesUnordered`
//! with a context per field; for the small objects that lists are made of (a purpose and its
//! choice, a purpose's current state, an event) that was ≈ 25 % of a `read` request's
//! server CPU (docs/benchmarks.md, session 14). When an object's selection is plain fields
//! — no fragments, directives or arguments, no response key twice — and every field has its
//! value at hand, [`Plain`] builds the object's value directly (and [`PlainList`] a
//! list's); otherwise the object takes async-graphql's own path. The value is the same
//! either way (tested in `tests/api.rs`). Field hooks of extensions do not see these
//! fields: the one extension the schemas have (`auth::policy::AccessControl`, WebSocket
//! only) looks at root fields alone, which are never plain objects.

use std::borrow::Cow;

use async_graphql::connection::{Connection, Edge, EmptyFields, PageInfo};
use async_graphql::parser::types::{Field, Selection};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};

/// An object whose fields can be read without a context.
pub(crate) trait PlainFields: OutputType {
    /// The value of `field` (an object field's value built with [`plain_object`] from its
    /// own selection), or `None` when it has no value at hand (then the whole object takes
    /// async-graphql's path). Fields given arguments never get here: they take that path.
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value>;
}

/// `T` in an output position, resolved by [`PlainFields`] where it can be.
pub(crate) struct Plain<T>(pub(crate) T);

impl<T: PlainFields + Sync> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match plain_object(&self.0, field) {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// A list of `T` in an output position: built item by item with [`PlainFields`] when every
/// item can be (no future per item either), else async-graphql's list path.
pub(crate) struct PlainList<T>(pub(crate) Vec<T>);

impl<T: PlainFields + Send + Sync> OutputType for PlainList<T> {
    fn type_name() -> Cow<'static, str> {
        Vec::<T>::type_name()
    }

    fn qualified_type_name() -> String {
        Vec::<T>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Vec::<T>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match plain_list(self.0.iter(), field) {
            Some(list) => Ok(list),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// The object value of `field`'s selection on `object` when it is plain fields with values
/// at hand.
pub(crate) fn plain_object<T: PlainFields>(object: &T, field: &Positioned<Field>) -> Option<Value> {
    let items = &field.node.selection_set.node.items;
    let mut out = async_graphql::indexmap::IndexMap::with_capacity(items.len());
    for item in items {
        let Selection::Field(f) = &item.node else {
            return None;
        };
        if !f.node.directives.is_empty() || !f.node.arguments.is_empty() {
            return None;
        }
        let value = match f.node.name.node.as_str() {
            "__typename" => Value::String(T::type_name().into_owned()),
            _ => object.plain_field(f)?,
        };
        let key: Name = f.node.response_key().node.clone();
        if out.insert(key, value).is_some() {
            return None;
        }
    }
    Some(Value::Object(out))
}

/// A page of a Relay connection of plain nodes (`String` cursors, no extra fields).
pub(crate) type PlainConnection<N> = Connection<String, Plain<N>>;

impl<N: PlainFields + Send + Sync> PlainFields for PlainConnection<N> {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "edges" => plain_list(self.edges.iter(), field),
            "nodes" => plain_list(self.edges.iter().map(|e| &e.node.0), field),
            "pageInfo" => plain_object(
                &PageInfo {
                    has_previous_page: self.has_previous_page,
                    has_next_page: self.has_next_page,
                    start_cursor: self.edges.first().map(|e| e.cursor.clone()),
                    end_cursor: self.edges.last().map(|e| e.cursor.clone()),
                },
                field,
            ),
            _ => None,
        }
    }
}

impl<N: PlainFields + Send + Sync> PlainFields for Edge<String, Plain<N>, EmptyFields> {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        match field.node.name.node.as_str() {
            "cursor" => Some(Value::String(self.cursor.clone())),
            "node" => plain_object(&self.node.0, field),
            _ => None,
        }
    }
}

impl PlainFields for PageInfo {
    fn plain_field(&self, field: &Positioned<Field>) -> Option<Value> {
        let cursor = |c: &Option<String>| c.clone().map_or(Value::Null, Value::String);
        match field.node.name.node.as_str() {
            "hasPreviousPage" => Some(Value::Boolean(self.has_previous_page)),
            "hasNextPage" => Some(Value::Boolean(self.has_next_page)),
            "startCursor" => Some(cursor(&self.start_cursor)),
            "endCursor" => Some(cursor(&self.end_cursor)),
            _ => None,
        }
    }
}

/// The list value of `field`'s selection on each of `items`, when every one is plain.
pub(crate) fn plain_list<'a, T: PlainFields + 'a>(
    items: impl Iterator<Item = &'a T>,
    field: &Positioned<Field>,
) -> Option<Value> {
    items
        .map(|i| plain_object(i, field))
        .collect::<Option<Vec<_>>>()
        .map(Value::List)
}
