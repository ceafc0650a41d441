//! Custom scalars: `Hash` (lowercase hex) and `UInt64` (decimal string).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use shard::hash::Hash;

/// A 32-byte blake3 digest as 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashHex(pub Hash);

/// A 32-byte blake3 digest as 64 lowercase hexadecimal digits.
#[Scalar(name = "Hash")]
impl ScalarType for HashHex {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Hash::from_hex(s)
                .map(HashHex)
                .ok_or_else(|| InputValueError::custom("a Hash is 64 hexadecimal digits")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_hex())
    }
}

/// An unsigned 64-bit integer as a decimal string (GraphQL `Int` is only 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UInt64(pub u64);

/// An unsigned 64-bit integer, written as a decimal string because GraphQL `Int` holds
/// only 32 bits. Inputs may also be given as a non-negative JSON number.
#[Scalar(name = "UInt64")]
impl ScalarType for UInt64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .parse()
                .map(UInt64)
                .map_err(|_| InputValueError::custom("a UInt64 is a decimal string of 0..2^64-1")),
            Value::Number(n) => n
                .as_u64()
                .map(UInt64)
                .ok_or_else(|| InputValueError::custom("a UInt64 is a non-negative integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}
