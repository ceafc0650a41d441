//! The bulk path: event variables (`[ConsentEventInput!]!`, `ConsentEventInput!`) decoded
//! straight from the request body.
//!
//! async-graphql turns every variable into its own value tree (`ConstValue`), copies an
//! argument's tree before reading it, and then walks it into the input type: for a
//! 1,000-event `recordConsents`, that was about a third of the server's CPU
//! (docs/benchmarks.md); for a single `recordConsent`, ≈ 10 %. Here the body is parsed with
//! each variable left as raw JSON; a variable that the operation declares as
//! `[ConsentEventInput!]!` (holding a JSON array) or `ConsentEventInput!` (holding an
//! object) is decoded by serde directly into `ConsentEventInput`s (the input types derive
//! `Deserialize` with GraphQL's names and coercion rules), and async-graphql sees a
//! placeholder in its place: an empty list, or [`placeholder_event`]. `recordConsents` and
//! `recordConsent` then take the decoded events instead of their argument when the argument
//! is that variable ([`events_for`]). Every other variable, and every request that does not
//! declare such a variable, reaches async-graphql exactly as before. A placeholder that
//! reached the ledger would be refused there (no subject, no purposes), never recorded.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Mutex;

use actix_web::web::Bytes;
use async_graphql::parser::types::{BaseType, DocumentOperations, ExecutableDocument, Type};
use async_graphql::{Context, Name, Variables};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeSeed;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::query_cache::QueryCache;
use crate::schema::types::ConsentEventInput;
use one_pass::PlannedVar;
use shard::format::limits::MAX_BATCH_EVENTS;

mod one_pass;

/// The input type whose variables take the bulk path.
const BULK_INPUT_TYPE: &str = "ConsentEventInput";

/// How a bulk variable holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `[ConsentEventInput!]!`: a JSON array.
    List,
    /// `ConsentEventInput!`: one JSON object.
    One,
}

impl Shape {
    /// Whether `json` is a value of this shape's JSON kind (else async-graphql reads it and
    /// reports the error).
    fn holds(self, json: &str) -> bool {
        json.starts_with(match self {
            Shape::List => '[',
            Shape::One => '{',
        })
    }

    /// The events of a variable's JSON.
    fn decode(self, json: &[u8]) -> serde_json::Result<Vec<ConsentEventInput>> {
        match self {
            Shape::List => {
                let mut de = serde_json::Deserializer::from_slice(json);
                let events = de.deserialize_seq(EventList::sized_for(json))?;
                de.end()?;
                Ok(events)
            }
            Shape::One => serde_json::from_slice(json).map(|one| vec![one]),
        }
    }

    /// What async-graphql reads in the variable's place: a value of the type, which the
    /// resolver discards (an empty list, or [`placeholder_event`]).
    fn placeholder(self) -> async_graphql::Value {
        match self {
            Shape::List => async_graphql::Value::List(Vec::new()),
            Shape::One => placeholder_event(),
        }
    }
}

/// The fewest bytes of JSON a valid event takes: its seven required fields with one-byte
/// values, a single purpose and the shortest time (174 bytes), rounded down.
const MIN_EVENT_JSON_BYTES: usize = 160;

/// A JSON array of events, decoded into a vector sized once from the array's length in
/// bytes: JSON gives no element count, and growing a vector of up to
/// `MAX_BATCH_EVENTS` events by doubling copied them ten times.
#[derive(Clone, Copy)]
struct EventList {
    /// How many events the array can hold at most (and at most `MAX_BATCH_EVENTS`; more
    /// still decode, and the resolver refuses them).
    capacity: usize,
}

impl EventList {
    /// Room for as many events as `json` (an event list, or a body holding one) can hold.
    fn sized_for(json: &[u8]) -> EventList {
        EventList {
            capacity: (json.len() / MIN_EVENT_JSON_BYTES).min(MAX_BATCH_EVENTS),
        }
    }
}

impl<'de> Visitor<'de> for EventList {
    type Value = Vec<ConsentEventInput>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(self.capacity);
        while let Some(event) = seq.next_element()? {
            out.push(event);
        }
        Ok(out)
    }
}

/// A GraphQL-over-HTTP request with its variables left as raw JSON (the fields and rules
/// of `async_graphql::Request`'s own deserialisation).
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default)]
    query: String,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
    #[serde(default, borrow)]
    variables: Option<BTreeMap<String, &'a RawValue>>,
    #[serde(default, borrow)]
    extensions: Option<&'a RawValue>,
}

/// Events decoded by the bulk path, by variable name, handed to resolvers as request data.
pub(crate) struct BulkEvents {
    /// The request body the variables were read from (shared, not copied).
    body: Bytes,
    /// Variable name → where its JSON sits in `body`, and its decoded events until a
    /// resolver takes them.
    vars: HashMap<String, BulkVar>,
}

/// One bulk variable.
struct BulkVar {
    /// Byte range of the variable's JSON in the body, when it was kept raw (a variable
    /// decoded in the single pass is named once in the text, so taken once).
    range: Option<Range<usize>>,
    /// A list or one event.
    shape: Shape,
    /// The decoded events, taken by the first field that uses the variable; a second
    /// field using the same variable decodes them again from `range`.
    decoded: Mutex<Option<Vec<ConsentEventInput>>>,
}

impl BulkEvents {
    fn take(&self, name: &str) -> Option<Vec<ConsentEventInput>> {
        let var = self.vars.get(name)?;
        let taken = var.decoded.lock().unwrap_or_else(|p| p.into_inner()).take();
        taken.or_else(|| {
            let range = var.range.clone()?;
            let events = var.shape.decode(&self.body[range]);
            Some(events.expect("the same bytes decoded once already"))
        })
    }
}

/// Parses one GraphQL request from `body` (a single request, not a JSON array), decoding
/// bulk variables of texts already in `queries` with serde; also says how many events it
/// decoded so. The error is the client's: JSON that is not a request (`Err(Malformed)`) or
/// a bulk variable that is not a valid list of events (`Err(Variable)`). Reads the body
/// once where it can ([`one_pass`]), else in two passes.
pub(crate) fn parse_request(
    body: Bytes,
    queries: &QueryCache,
) -> Result<(async_graphql::Request, u64), BulkError> {
    let plan = |text: &str, operation: Option<&str>| bulk_plan(queries, text, operation);
    let variable_error = RefCell::new(None);
    let seed = one_pass::RequestSeed {
        plan: &plan,
        list: EventList::sized_for(&body),
        variable_error: &variable_error,
    };
    // JSON text is UTF-8: checked once for the whole body (an ASCII run costs a fraction of
    // an instruction a byte) instead of once for each string by serde_json's slice reader
    // (≈ 100 instructions a string, about 40 strings an event). A body that is not UTF-8
    // goes to the slice reader, whose error says where.
    let read = match std::str::from_utf8(&body) {
        Ok(text) => read_whole(seed, serde_json::Deserializer::from_str(text)),
        Err(_) => read_whole(seed, serde_json::Deserializer::from_slice(&body)),
    };
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            return Err(match variable_error.take() {
                Some(detail) if e.is_data() => BulkError::Variable(detail),
                _ => BulkError::Malformed(e),
            });
        }
    };
    let mut out = Decoded::default();
    match read.variables {
        one_pass::Variables::Raw(raw) => {
            let names = bulk_plan(queries, &read.query, read.operation_name.as_deref());
            out.add_raw(&body, raw, &names)?;
        }
        one_pass::Variables::Read { plan, values } => {
            if read.operation_named_late
                && plan != bulk_plan(queries, &read.query, read.operation_name.as_deref())
            {
                // The operationName after the variables chose other bulk variables.
                return parse_in_two_passes(body, queries);
            }
            for (name, value) in values {
                out.add_read(&body, name, value, &plan)?;
            }
        }
    }
    // Bytes clones share the buffer: the extensions still borrow it.
    out.into_request(
        body.clone(),
        read.query,
        read.operation_name,
        read.extensions,
    )
}

/// The request `seed` reads from `de`, which must hold nothing after it.
fn read_whole<'de, R: serde_json::de::Read<'de>>(
    seed: one_pass::RequestSeed<'_>,
    mut de: serde_json::Deserializer<R>,
) -> Result<one_pass::Read<'de>, serde_json::Error> {
    let read = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(read)
}

/// [`parse_request`] in two passes: the request with every variable as raw JSON, then each
/// variable decoded.
fn parse_in_two_passes(
    body: Bytes,
    queries: &QueryCache,
) -> Result<(async_graphql::Request, u64), BulkError> {
    let raw: RawRequest<'_> = serde_json::from_slice(&body).map_err(BulkError::Malformed)?;
    let names = bulk_plan(queries, &raw.query, raw.operation_name.as_deref());
    let mut out = Decoded::default();
    out.add_raw(&body, raw.variables.unwrap_or_default(), &names)?;
    out.into_request(body.clone(), raw.query, raw.operation_name, raw.extensions)
}

/// The bulk variables of `text`'s operation `operation`, when the text is cached.
fn bulk_plan(queries: &QueryCache, text: &str, operation: Option<&str>) -> Vec<PlannedVar> {
    let names = queries
        .with_document(text, |doc| bulk_variables(doc, operation))
        .unwrap_or_default();
    names
        .into_iter()
        .map(|(name, shape)| PlannedVar {
            once: one_pass::references(text, &name) <= 2,
            name,
            shape,
        })
        .collect()
}

/// The variables of a request as they are decoded, and its bulk events.
#[derive(Default)]
struct Decoded {
    variables: Variables,
    vars: HashMap<String, BulkVar>,
    events: u64,
}

impl Decoded {
    /// Decodes variables kept as raw JSON (a bulk one of the right kind into events).
    fn add_raw(
        &mut self,
        body: &Bytes,
        raw: BTreeMap<String, &RawValue>,
        plan: &[PlannedVar],
    ) -> Result<(), BulkError> {
        for (name, value) in raw {
            self.add_json(body, name, value, plan)?;
        }
        Ok(())
    }

    fn add_json(
        &mut self,
        body: &Bytes,
        name: String,
        value: &RawValue,
        plan: &[PlannedVar],
    ) -> Result<(), BulkError> {
        let json = value.get();
        let shape = plan
            .iter()
            .find(|p| p.name == name && p.shape.holds(json))
            .map(|p| p.shape);
        let Some(shape) = shape else {
            let value = serde_json::from_str(json).map_err(BulkError::Malformed)?;
            self.variables.insert(Name::new(name), value);
            return Ok(());
        };
        let events = shape
            .decode(json.as_bytes())
            .map_err(|e| BulkError::Variable(format!("${name}: {e}")))?;
        let start = json.as_ptr() as usize - body.as_ptr() as usize;
        self.add_events(name, shape, events, Some(start..start + json.len()));
        Ok(())
    }

    /// Adds a variable the single pass read.
    fn add_read(
        &mut self,
        body: &Bytes,
        name: String,
        value: one_pass::ReadValue<'_>,
        plan: &[PlannedVar],
    ) -> Result<(), BulkError> {
        match value {
            one_pass::ReadValue::Value(value) => {
                self.variables.insert(Name::new(name), value);
            }
            one_pass::ReadValue::Events(shape, events) => {
                self.add_events(name, shape, events, None);
            }
            one_pass::ReadValue::Raw(json) => self.add_json(body, name, json, plan)?,
        }
        Ok(())
    }

    fn add_events(
        &mut self,
        name: String,
        shape: Shape,
        events: Vec<ConsentEventInput>,
        range: Option<Range<usize>>,
    ) {
        self.events += events.len() as u64;
        let var = BulkVar {
            range,
            shape,
            decoded: Mutex::new(Some(events)),
        };
        self.variables
            .insert(Name::new(name.as_str()), shape.placeholder());
        self.vars.insert(name, var);
    }

    fn into_request(
        self,
        body: Bytes,
        query: String,
        operation_name: Option<String>,
        extensions: Option<&RawValue>,
    ) -> Result<(async_graphql::Request, u64), BulkError> {
        let mut request = async_graphql::Request::new(query).variables(self.variables);
        request.operation_name = operation_name;
        if let Some(ext) = extensions {
            request.extensions = serde_json::from_str(ext.get()).map_err(BulkError::Malformed)?;
        }
        if !self.vars.is_empty() {
            request = request.data(BulkEvents {
                body,
                vars: self.vars,
            });
        }
        Ok((request, self.events))
    }
}

/// Why a body could not be parsed by [`parse_request`].
#[derive(Debug)]
pub(crate) enum BulkError {
    /// Not a GraphQL request in JSON.
    Malformed(serde_json::Error),
    /// A bulk variable is not a valid list of events (the detail names it).
    Variable(String),
}

/// The variables of the operation `name` (the only one when `None`) declared as
/// `[ConsentEventInput!]!` or `ConsentEventInput!`, without a default.
fn bulk_variables(doc: &ExecutableDocument, name: Option<&str>) -> Vec<(String, Shape)> {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => op,
        (DocumentOperations::Single(_), Some(_)) => return Vec::new(),
        (DocumentOperations::Multiple(ops), Some(n)) => match ops.get(n) {
            Some(op) => op,
            None => return Vec::new(),
        },
        (DocumentOperations::Multiple(_), None) => return Vec::new(),
    };
    op.node
        .variable_definitions
        .iter()
        .filter(|v| v.node.default_value.is_none())
        .filter_map(|v| {
            Some((
                v.node.name.node.to_string(),
                bulk_shape(&v.node.var_type.node)?,
            ))
        })
        .collect()
}

/// `[ConsentEventInput!]!` or `ConsentEventInput!` exactly.
fn bulk_shape(t: &Type) -> Option<Shape> {
    let is_event = |t: &Type| {
        !t.nullable && matches!(&t.base, BaseType::Named(n) if n.as_str() == BULK_INPUT_TYPE)
    };
    match &t.base {
        BaseType::List(inner) if !t.nullable && is_event(inner) => Some(Shape::List),
        BaseType::Named(_) if is_event(t) => Some(Shape::One),
        _ => None,
    }
}

/// What async-graphql reads in place of a decoded `ConsentEventInput!` variable: a value of
/// the type (every required field, empty), which the ledger would refuse.
fn placeholder_event() -> async_graphql::Value {
    let text = |s: &str| async_graphql::Value::String(s.to_string());
    let fields = [
        ("subjectId", text("")),
        ("purposes", async_graphql::Value::List(Vec::new())),
        ("noticeId", text("")),
        ("noticeVersion", text("")),
        (
            "captureMethod",
            async_graphql::Value::Enum(Name::new("API")),
        ),
        ("jurisdiction", text("")),
        ("occurredAt", text("1970-01-01T00:00:00Z")),
    ];
    async_graphql::Value::Object(fields.into_iter().map(|(k, v)| (Name::new(k), v)).collect())
}

/// The events of the resolving field's `argument` when it is a variable the bulk path
/// decoded (one event for a `ConsentEventInput!` variable); `None` when the argument came
/// through async-graphql as usual.
pub(crate) fn events_for(ctx: &Context<'_>, argument: &str) -> Option<Vec<ConsentEventInput>> {
    let bulk = ctx.data_opt::<BulkEvents>()?;
    let value = ctx.item.node.get_argument(argument)?;
    match &value.node {
        async_graphql_value::Value::Variable(name) => bulk.take(name.as_str()),
        _ => None,
    }
}

/// GraphQL's list input coercion for serde: a single value where a list is expected is a
/// list of one.
pub(crate) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list, or a single item")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
    }
    d.deserialize_any(OneOrMany(std::marker::PhantomData))
}

/// A `DateTime` input as async-graphql's scalar reads it (`str::parse`, RFC 3339).
pub(crate) fn date_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Time;
    impl Visitor<'_> for Time {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date and time")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            parse_date_time(s).map_err(E::custom)
        }
    }
    d.deserialize_str(Time)
}

/// What async-graphql's `DateTime` scalar makes of `s` (chrono's `FromStr`), faster: the
/// strict RFC 3339 parser first (27 against 125 ns a date on this machine, one or two dates
/// an event), and `FromStr`, which also accepts other forms (a space for the `T`, …) and
/// gives their errors, only for what the strict parser refuses.
fn parse_date_time(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => s.parse(),
    }
}

/// An optional `DateTime` input: absent or `null` is `None`.
pub(crate) fn opt_date_time<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "date_time")] DateTime<Utc>);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_time_reads_as_async_graphqls_scalar_reads_it() {
        // Proves: the strict parser's fast path changes no answer: the same instant for
        // every form chrono's FromStr accepts, and an error for everything it refuses.
        let texts = [
            "2026-01-01T00:00:00Z",
            "2026-11-27T13:45:07.123Z",
            "2026-11-27T13:45:07.123456789Z",
            "2026-11-27t13:45:07z",
            "2026-11-27T13:45:07+02:00",
            "2026-11-27T13:45:07-05:30",
            "2026-11-27T13:45:07.5+00:00",
            "2026-11-27 13:45:07Z",
            "2026-11-27T23:59:60Z",
            "2026-11-27T13:45:07",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2026-11-27T13:45:07+24:00",
            "",
            "yesterday",
        ];
        for text in texts {
            let ours = parse_date_time(text).ok();
            let theirs = text.parse::<DateTime<Utc>>().ok();
            assert_eq!(ours, theirs, "{text:?}");
        }
        let read = texts.iter().filter(|t| parse_date_time(t).is_ok()).count();
        assert!(
            (8..texts.len()).contains(&read),
            "both kinds are tried: {read} read"
        );
    }

    /// The shortest valid event: required fields only, one-byte values, one purpose.
    const SHORTEST_EVENT: &str = r#"{"subjectId":"x","purposes":{"purpose":"a","choice":"DENIED"},"noticeId":"n","noticeVersion":"v","captureMethod":"API","jurisdiction":"E","occurredAt":"2026-01-01T00:00:00Z"}"#;

    /// Which way `body` was read: for each bulk variable, whether it kept a byte range
    /// (read raw, decoded afterwards) or not (decoded in the single pass).
    fn kept_raw(queries: &QueryCache, body: &str) -> Vec<(String, bool)> {
        let (request, _) = parse_request(Bytes::from(body.to_string()), queries).unwrap();
        let bulk = request
            .data
            .get(&std::any::TypeId::of::<BulkEvents>())
            .unwrap();
        let bulk = bulk.downcast_ref::<BulkEvents>().unwrap();
        let mut vars: Vec<_> = bulk
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.range.is_some()))
            .collect();
        vars.sort();
        vars
    }

    #[test]
    fn a_query_before_its_variables_has_its_events_decoded_in_the_single_pass() {
        // Proves: with the text cached and the query first, an event list named once is
        // decoded as the body is read (no raw range kept); one named twice, or read before
        // the query, is kept raw and decoded afterwards.
        let queries = QueryCache::default();
        let text = "mutation($c: ID!, $e: [ConsentEventInput!]!, $f: [ConsentEventInput!]!) { a: recordConsents(customerId: $c, events: $e) { duplicate } b: recordConsents(customerId: $c, events: $f) { duplicate } c: recordConsents(customerId: $c, events: $f) { duplicate } }";
        queries.prepare(&mut async_graphql::Request::new(text), None);
        let event = SHORTEST_EVENT;
        let query = serde_json::to_string(text).unwrap();
        let vars = format!(r#"{{"c":"acme","e":[{event}],"f":[{event}]}}"#);
        let first = format!(r#"{{"query":{query},"variables":{vars}}}"#);
        let e = || "e".to_string();
        let f = || "f".to_string();
        assert_eq!(kept_raw(&queries, &first), [(e(), false), (f(), true)]);
        let later = format!(r#"{{"variables":{vars},"query":{query}}}"#);
        assert_eq!(kept_raw(&queries, &later), [(e(), true), (f(), true)]);
    }

    #[test]
    fn a_variable_is_counted_wherever_the_text_names_it() {
        // Proves: `references` counts `$name` with GraphQL's ignored characters after `$`,
        // not a longer name that starts the same, and counts a `$` before a comment for
        // every name (too many is safe, too few is not).
        let refs = one_pass::references;
        assert_eq!(refs("($e: [X!]!) { f(a: $e, b: $ e, c: $,e) }", "e"), 4);
        assert_eq!(refs("($events: [X!]!) { f(a: $events) }", "e"), 0);
        assert_eq!(refs("($e: X) { f(a: $ # note\n e) }", "e"), 2);
        assert_eq!(refs("$e", "e"), 1);
        assert_eq!(refs("$", "e"), 0);
    }

    #[test]
    fn a_list_of_the_shortest_valid_events_fits_the_capacity_its_length_gives() {
        // Proves: MIN_EVENT_JSON_BYTES is no more than the shortest valid event takes, so a
        // list's vector is sized once (never grown while decoding) up to the batch bound,
        // and the sized decoder reads what serde's own would.
        let shortest = SHORTEST_EVENT;
        for count in [1, 2, 7, MAX_BATCH_EVENTS] {
            let json = format!("[{}]", vec![shortest; count].join(","));
            assert!(
                EventList::sized_for(json.as_bytes()).capacity >= count,
                "{count}"
            );
            let events = Shape::List.decode(json.as_bytes()).unwrap();
            assert_eq!(events.len(), count);
            assert!(events.capacity() <= MAX_BATCH_EVENTS.max(count));
        }
        let too_many = format!("[{}]", vec![shortest; MAX_BATCH_EVENTS + 1].join(","));
        assert_eq!(
            Shape::List.decode(too_many.as_bytes()).unwrap().len(),
            MAX_BATCH_EVENTS + 1,
            "more than the bound still decode; the resolver refuses them"
        );
        assert!(
            Shape::List.decode(b"[] x").is_err(),
            "trailing bytes are refused"
        );
    }

    #[test]
    fn only_the_two_record_mutations_take_bulk_arguments() {
        // Proves: `recordConsent(event:)` and `recordConsents(events:)` are the only
        // arguments of the bulk types, so no other field can receive a placeholder instead
        // of its events (a new field of these types must call `events_for` and be added
        // here).
        let sdl = include_str!("../../schema.graphql");
        let uses: Vec<&str> = sdl
            .lines()
            .filter(|l| l.contains("ConsentEventInput!"))
            .map(str::trim_start)
            .collect();
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert!(
            uses[0].starts_with("recordConsent(") && uses[0].contains("event: ConsentEventInput!)"),
            "{uses:?}"
        );
        assert!(
            uses[1].starts_with("recordConsents(")
                && uses[1].contains("events: [ConsentEventInput!]!"),
            "{uses:?}"
        );
    }

    #[test]
    fn only_the_exact_types_without_a_default_are_decoded_in_bulk() {
        // Proves: the bulk path picks `[ConsentEventInput!]!` and `ConsentEventInput!`
        // variables of the chosen operation and nothing else (nullable types, defaults,
        // other operations).
        let doc = async_graphql::parser::parse_query(
            "mutation A($e: [ConsentEventInput!]!, $n: [ConsentEventInput!], $d: [ConsentEventInput!]! = [], $o: ConsentEventInput!, $p: ConsentEventInput, $l: [ConsentEventInput]!) { __typename } mutation B($x: [ConsentEventInput!]!) { __typename }",
        )
        .unwrap();
        assert_eq!(
            bulk_variables(&doc, Some("A")),
            vec![
                ("e".to_string(), Shape::List),
                ("o".to_string(), Shape::One)
            ]
        );
        assert_eq!(
            bulk_variables(&doc, Some("B")),
            vec![("x".to_string(), Shape::List)]
        );
        assert!(bulk_variables(&doc, None).is_empty(), "ambiguous operation");
        assert!(bulk_variables(&doc, Some("C")).is_empty());
    }
}
