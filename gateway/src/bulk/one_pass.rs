//! Reading a request body in one pass: when `query` comes before `variables` (as most
//! clients send it) and its text is cached, the operation's bulk variables are known
//! before their JSON is reached, so they are decoded into events as the body is read,
//! and every other variable straight into async-graphql's value. The two-pass reading
//! (every variable kept as raw JSON, then decoded) scanned and UTF-8-checked a batch's
//! events twice: about 8 % of the server's instructions for a 1,000-event `recordConsents`
//! (docs/benchmarks.md, session 25).
//!
//! A variable the text names more than once is kept raw (each field that uses it decodes
//! its own copy, as before). Variables read before the query are kept raw and decoded
//! afterwards, as the two-pass reading does. If an `operationName` read after the
//! variables selects other bulk variables than those decoded, the caller reads the body
//! again in two passes.

use std::cell::RefCell;
use std::fmt;

use async_graphql::Value;
use serde::Deserialize;
use serde::de::value::{
    BoolDeserializer, F64Deserializer, I64Deserializer, MapAccessDeserializer,
    SeqAccessDeserializer, StrDeserializer, U64Deserializer, UnitDeserializer,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use super::{EventList, Shape};
use crate::schema::types::ConsentEventInput;

/// A bulk variable of the operation, as the single pass treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlannedVar {
    /// The variable's name (without `$`).
    pub(super) name: String,
    /// A list of events or one.
    pub(super) shape: Shape,
    /// Whether the text names it at most once besides its definition: only then is it
    /// decoded while the body is read.
    pub(super) once: bool,
}

/// What the single pass read of a request.
pub(super) struct Read<'a> {
    /// The query text (`""` when absent).
    pub(super) query: String,
    /// The operation's name, if given.
    pub(super) operation_name: Option<String>,
    /// The request's extensions, as raw JSON.
    pub(super) extensions: Option<&'a RawValue>,
    /// The variables.
    pub(super) variables: Variables<'a>,
    /// Whether `operationName` came after the variables were read (under the plan of no
    /// name): only then can the plan they were read under differ from the request's.
    pub(super) operation_named_late: bool,
}

/// The variables of a request, as read.
pub(super) enum Variables<'a> {
    /// Read before the query: raw JSON, decoded afterwards as the two-pass reading does.
    Raw(BTreeMap<String, &'a RawValue>),
    /// Read after the query, with the bulk variables it planned.
    Read {
        /// The plan the variables were read under.
        plan: Vec<PlannedVar>,
        /// Each variable, in body order.
        values: Vec<(String, ReadValue<'a>)>,
    },
}

/// One variable read after the query.
pub(super) enum ReadValue<'a> {
    /// A variable async-graphql reads.
    Value(Value),
    /// A bulk variable's events.
    Events(Shape, Vec<ConsentEventInput>),
    /// A bulk variable the text names more than once, as raw JSON.
    Raw(&'a RawValue),
}

/// Reads the request object of a body; `plan` gives the bulk variables of a query text
/// and operation name (none when the text is not cached). A bulk variable that is not a
/// valid list of events leaves its message in `variable_error` before the error returns.
pub(super) struct RequestSeed<'p> {
    /// The bulk variables of a text and operation name.
    pub(super) plan: &'p dyn Fn(&str, Option<&str>) -> Vec<PlannedVar>,
    /// How an event list is decoded (sized from the body's length).
    pub(super) list: EventList,
    /// Where a bulk variable's decoding error is described.
    pub(super) variable_error: &'p RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = Read<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

/// The members of a request object.
enum Member {
    Query,
    OperationName,
    Variables,
    Extensions,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = Member;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "query" => Member::Query,
                    "operationName" => Member::OperationName,
                    "variables" => Member::Variables,
                    "extensions" => Member::Extensions,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(Name)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GraphQL request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<'de>, A::Error> {
        let mut query: Option<String> = None;
        let mut operation_name: Option<Option<String>> = None;
        let mut extensions: Option<Option<&'de RawValue>> = None;
        let mut variables: Option<Variables<'de>> = None;
        let mut operation_named_late = false;
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Query => set(&mut query, "query", map.next_value()?)?,
                Member::OperationName => {
                    operation_named_late = variables.is_some();
                    set(&mut operation_name, "operationName", map.next_value()?)?
                }
                Member::Extensions => set(&mut extensions, "extensions", map.next_value()?)?,
                Member::Variables => {
                    let read = match &query {
                        None => {
                            let raw: Option<BTreeMap<String, &'de RawValue>> = map.next_value()?;
                            Variables::Raw(raw.unwrap_or_default())
                        }
                        Some(text) => {
                            let name = operation_name.clone().flatten();
                            let plan = (self.plan)(text, name.as_deref());
                            let values = map.next_value_seed(VariablesSeed {
                                plan: &plan,
                                list: self.list,
                                variable_error: self.variable_error,
                            })?;
                            Variables::Read { plan, values }
                        }
                    };
                    set(&mut variables, "variables", read)?;
                }
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Read {
            query: query.unwrap_or_default(),
            operation_name: operation_name.flatten(),
            extensions: extensions.flatten(),
            variables: variables.unwrap_or(Variables::Raw(BTreeMap::new())),
            operation_named_late,
        })
    }
}

/// Stores a member's value, refusing a second (as serde's derived readers do).
fn set<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(name)),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Reads the `variables` member (an object or `null`) under a plan.
struct VariablesSeed<'p> {
    plan: &'p [PlannedVar],
    list: EventList,
    variable_error: &'p RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for VariablesSeed<'_> {
    type Value = Vec<(String, ReadValue<'de>)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for VariablesSeed<'_> {
    type Value = Vec<(String, ReadValue<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of variables, or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = match self.plan.iter().find(|p| p.name == name) {
                None => ReadValue::Value(map.next_value()?),
                Some(p) if !p.once => ReadValue::Raw(map.next_value()?),
                Some(p) => map.next_value_seed(BulkSeed {
                    name: &name,
                    shape: p.shape,
                    list: self.list,
                    variable_error: self.variable_error,
                })?,
            };
            out.push((name, value));
        }
        Ok(out)
    }
}

/// Reads one bulk variable: events when its JSON has the shape's kind (an array for a
/// list, an object for one event), else the value async-graphql reads and judges (a single
/// object for a list is GraphQL's list of one; anything else its error).
struct BulkSeed<'p> {
    name: &'p str,
    shape: Shape,
    list: EventList,
    variable_error: &'p RefCell<Option<String>>,
}

impl BulkSeed<'_> {
    /// Describes a decoding error of the variable, then returns it.
    fn failed<E: de::Error>(&self, e: E) -> E {
        *self.variable_error.borrow_mut() = Some(format!("${}: {e}", self.name));
        e
    }
}

impl<'de> DeserializeSeed<'de> for BulkSeed<'_> {
    type Value = ReadValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BulkSeed<'_> {
    type Value = ReadValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GraphQL input value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.shape != Shape::List {
            return Value::deserialize(SeqAccessDeserializer::new(seq)).map(ReadValue::Value);
        }
        match self.list.visit_seq(seq) {
            Ok(events) => Ok(ReadValue::Events(Shape::List, events)),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if self.shape != Shape::One {
            return Value::deserialize(MapAccessDeserializer::new(map)).map(ReadValue::Value);
        }
        match ConsentEventInput::deserialize(MapAccessDeserializer::new(map)) {
            Ok(event) => Ok(ReadValue::Events(Shape::One, vec![event])),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Value::deserialize(BoolDeserializer::new(v)).map(ReadValue::Value)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Value::deserialize(I64Deserializer::new(v)).map(ReadValue::Value)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Value::deserialize(U64Deserializer::new(v)).map(ReadValue::Value)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Value::deserialize(F64Deserializer::new(v)).map(ReadValue::Value)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Value::deserialize(StrDeserializer::new(v)).map(ReadValue::Value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Value::deserialize(UnitDeserializer::new()).map(ReadValue::Value)
    }
}

/// How many times `text` names the variable `name` (`$name`, with GraphQL's ignored
/// characters allowed between `$` and the name), its definition included. A `$` followed
/// by a comment counts for every variable: the count may be too high (the variable is
/// then kept raw), never too low.
pub(super) fn references(text: &str, name: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    for (at, _) in text.match_indices('$') {
        let mut i = at + 1;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r' | b',') {
            i += 1;
        }
        if bytes.get(i) == Some(&b'#') {
            count += 1;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(bytes.len(), |n| i + n);
        if &text[i..end] == name {
            count += 1;
        }
    }
    count
}
