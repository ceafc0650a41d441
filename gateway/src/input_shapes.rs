//! Unknown input-object fields in variable values, found without full validation.
//!
//! Requests whose query text already passed strict validation run under
//! `ValidationMode::Fast` (`query_cache`). Their variable values are still coerced when
//! arguments are read (wrong scalar types, bad enum values, missing required fields and
//! nulls are refused there), except for one thing: async-graphql's input objects ignore
//! fields they do not know, where strict validation refuses them. This check restores that
//! refusal. It walks each variable against its declared type using the input-object
//! field lists of the schema's own SDL, so it follows the schema as it changes.

use std::collections::HashMap;

use async_graphql::Variables;
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::{Name, Value};

/// The fields of every input object of the schema: name → field name → declared type.
pub(crate) struct InputShapes {
    objects: HashMap<String, HashMap<String, Type>>,
}

impl InputShapes {
    /// Reads the input objects of a schema from its SDL.
    pub(crate) fn from_sdl(sdl: &str) -> InputShapes {
        let doc = async_graphql::parser::parse_schema(sdl).expect("the schema's own SDL parses");
        let mut objects = HashMap::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(t) = def else {
                continue;
            };
            let TypeKind::InputObject(input) = t.node.kind else {
                continue;
            };
            let fields = input
                .fields
                .into_iter()
                .map(|f| (f.node.name.node.to_string(), f.node.ty.node))
                .collect();
            objects.insert(t.node.name.node.to_string(), fields);
        }
        InputShapes { objects }
    }

    /// Fails with a message naming the first object field in `variables` that its input
    /// type does not define (for the operation `operation_name` selects in `doc`).
    pub(crate) fn check(
        &self,
        doc: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Result<(), String> {
        let Some(op) = operation(doc, operation_name) else {
            return Ok(()); // no such operation: execution reports it
        };
        for def in &op.variable_definitions {
            let name = &def.node.name.node;
            if let Some(value) = variables.get(name) {
                self.walk(value, &def.node.var_type.node)
                    .map_err(|detail| format!("variable ${name}: {detail}"))?;
            }
        }
        Ok(())
    }

    fn walk(&self, value: &Value, ty: &Type) -> Result<(), String> {
        match (&ty.base, value) {
            (BaseType::List(inner), Value::List(items)) => {
                items.iter().try_for_each(|item| self.walk(item, inner))
            }
            (BaseType::List(inner), single) => self.walk(single, inner),
            (BaseType::Named(type_name), Value::Object(map)) => {
                let Some(fields) = self.objects.get(type_name.as_str()) else {
                    return Ok(()); // a scalar given an object: coercion refuses it
                };
                for (key, v) in map {
                    let field_ty = fields.get(key.as_str()).ok_or_else(|| {
                        format!("unknown field \"{key}\" of type \"{type_name}\"")
                    })?;
                    self.walk(v, field_ty)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The names of the input objects known (for tests).
    #[cfg(test)]
    fn names(&self) -> std::collections::HashSet<&str> {
        self.objects.keys().map(String::as_str).collect()
    }
}

fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(&Name::new(n)).map(|o| &o.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|o| &o.node)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_at_any_depth_and_known_ones_pass() {
        // Proves: the shapes come from the SDL, and a stray key is named wherever it is
        // (top level, inside a list item, inside a nested object).
        let sdl = "input Outer { a: String, items: [Inner!]! } input Inner { b: Int, deep: Deeper } input Deeper { c: Boolean } type Query { f(x: Outer): Int }";
        let shapes = InputShapes::from_sdl(sdl);
        let names = std::collections::HashSet::from(["Outer", "Inner", "Deeper"]);
        assert_eq!(shapes.names(), names);
        let doc = async_graphql::parser::parse_query("query($o: Outer!) { f(x: $o) }").unwrap();
        let vars = |v: serde_json::Value| Variables::from_json(v);
        let good = vars(
            serde_json::json!({ "o": { "a": "x", "items": [{ "b": 1, "deep": { "c": true } }] } }),
        );
        assert_eq!(shapes.check(&doc, None, &good), Ok(()));
        for (bad, field) in [
            (serde_json::json!({ "o": { "zz": 1, "items": [] } }), "zz"),
            (
                serde_json::json!({ "o": { "items": [{ "b": 1 }, { "yy": 2 }] } }),
                "yy",
            ),
            (
                serde_json::json!({ "o": { "items": [{ "deep": { "c": true, "xx": 0 } }] } }),
                "xx",
            ),
        ] {
            let err = shapes.check(&doc, None, &vars(bad)).unwrap_err();
            assert!(
                err.contains(&format!("\"{field}\"")) && err.starts_with("variable $o"),
                "{err}"
            );
        }
    }
}
