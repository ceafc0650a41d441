//! Changes of a byte string for property tests of the verifiers (`src/untrusted_files.rs`,
//! `shard/tests/untrusted_input.rs`, which include this file): bytes replaced, inserted or
//! removed, and whole lines dropped, repeated or swapped, at positions taken modulo the
//! length, so that every generated change applies to any input.

use proptest::prelude::*;

/// A change of a file: bytes replaced, inserted or removed at positions taken modulo its
/// length, or whole lines dropped, repeated or swapped.
#[derive(Debug, Clone)]
pub enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    DropLine(usize),
    RepeatLine(usize),
    SwapLines(usize, usize),
}

/// One to three changes, in order.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    // Bytes that matter to JSON and base64 more often than chance would pick them.
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => prop::sample::select(b"\"\\{}[],:0129AZaz+/=\n ".to_vec()),
    ];
    let edit = prop_oneof![
        4 => (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::DropLine),
        1 => any::<usize>().prop_map(Edit::RepeatLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ];
    proptest::collection::vec(edit, 1..4)
}

/// `bytes` with `edits` applied in order.
pub fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Set(i, b) if !bytes.is_empty() => bytes[i % n] = b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            Edit::DropLine(_) | Edit::RepeatLine(_) | Edit::SwapLines(..) => {
                bytes = edit_lines(&bytes, e);
            }
            _ => {}
        }
    }
    bytes
}

fn edit_lines(bytes: &[u8], e: &Edit) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let n = lines.len();
    match *e {
        Edit::DropLine(i) => {
            lines.remove(i % n);
        }
        Edit::RepeatLine(i) => lines.insert(i % n, lines[i % n]),
        Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
        _ => unreachable!("only line edits come here"),
    }
    lines.join(&b'\n')
}
