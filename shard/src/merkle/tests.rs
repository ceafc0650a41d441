//! Proves the tree code equals RFC 9162's definitions, with blake3 and with SHA-256.

use super::*;
use crate::hash::Hash;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// RFC 9162 with SHA-256, for the published known-answer vectors.
struct Sha256Tree;

impl TreeHasher for Sha256Tree {
    fn hash_leaf(&self, data: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(data);
        Hash(h.finalize().into())
    }
    fn hash_children(&self, l: &Hash, r: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l.0);
        h.update(r.0);
        Hash(h.finalize().into())
    }
    fn hash_empty(&self) -> Hash {
        Hash(Sha256::digest(b"").into())
    }
}

// ---- The RFC's recursive definitions, written naively over the leaf hashes. ----

fn mth<H: TreeHasher>(h: &H, leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => h.hash_empty(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            h.hash_children(&mth(h, &leaves[..k]), &mth(h, &leaves[k..]))
        }
    }
}

fn naive_path<H: TreeHasher>(h: &H, m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return vec![];
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut p = naive_path(h, m, &leaves[..k]);
        p.push(mth(h, &leaves[k..]));
        p
    } else {
        let mut p = naive_path(h, m - k, &leaves[k..]);
        p.push(mth(h, &leaves[..k]));
        p
    }
}

fn naive_subproof<H: TreeHasher>(h: &H, m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![mth(h, leaves)] };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        let mut p = naive_subproof(h, m, &leaves[..k], b);
        p.push(mth(h, &leaves[k..]));
        p
    } else {
        let mut p = naive_subproof(h, m - k, &leaves[k..], false);
        p.push(mth(h, &leaves[..k]));
        p
    }
}

fn leaf_hashes<H: TreeHasher>(h: &H, n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| h.hash_leaf(&i.to_be_bytes()))
        .collect()
}

fn tree_of<H: TreeHasher>(h: &H, leaves: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(h, *l);
    }
    t
}

const MAX_EXHAUSTIVE: usize = 200;

#[test]
fn roots_and_proofs_equal_the_rfc_definitions_for_every_size_and_index() {
    let h = Blake3Tree;
    let leaves = leaf_hashes(&h, MAX_EXHAUSTIVE);
    let mut tree = MemoryTree::new();
    assert_eq!(tree.root(&h), h.hash_empty());
    for n in 1..=MAX_EXHAUSTIVE {
        tree.push(&h, leaves[n - 1]);
        let prefix = &leaves[..n];
        let root = mth(&h, prefix);
        assert_eq!(tree.root(&h), root, "root of size {n}");
        assert_eq!(subtree_root(&h, &tree, 0, n as u64).unwrap(), root);
        for (m, leaf) in prefix.iter().enumerate() {
            let proof = inclusion_proof(&h, &tree, m as u64, n as u64).unwrap();
            assert_eq!(proof, naive_path(&h, m, prefix), "path {m} in {n}");
            verify_inclusion(&h, leaf, m as u64, n as u64, &proof, &root).unwrap();
        }
        for m in 1..n {
            let proof = consistency_proof(&h, &tree, m as u64, n as u64).unwrap();
            assert_eq!(
                proof,
                naive_subproof(&h, m, prefix, true),
                "consistency {m}->{n}"
            );
            let old_root = mth(&h, &leaves[..m]);
            verify_consistency(&h, m as u64, n as u64, &old_root, &root, &proof).unwrap();
        }
    }
}

#[test]
fn stored_nodes_serve_proofs_for_older_tree_sizes() {
    let h = Blake3Tree;
    let leaves = leaf_hashes(&h, 100);
    let tree = tree_of(&h, &leaves);
    for size in [1u64, 7, 33, 64, 99] {
        let root = mth(&h, &leaves[..size as usize]);
        assert_eq!(subtree_root(&h, &tree, 0, size).unwrap(), root);
        let proof = inclusion_proof(&h, &tree, size - 1, size).unwrap();
        verify_inclusion(
            &h,
            &leaves[size as usize - 1],
            size - 1,
            size,
            &proof,
            &root,
        )
        .unwrap();
    }
}

#[test]
fn frontier_reloaded_from_stored_nodes_continues_identically() {
    let h = Blake3Tree;
    let leaves = leaf_hashes(&h, 77);
    let full = tree_of(&h, &leaves);
    let half = tree_of(&h, &leaves[..45]);
    let mut reloaded = Frontier::load(45, &half).unwrap();
    for l in &leaves[45..] {
        reloaded.push(&h, *l, |_| {});
    }
    assert_eq!(reloaded.root(&h), full.root(&h));
}

#[test]
fn requests_outside_the_tree_are_refused() {
    let h = Blake3Tree;
    let tree = tree_of(&h, &leaf_hashes(&h, 5));
    assert!(matches!(
        inclusion_proof(&h, &tree, 5, 5),
        Err(ProofError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        consistency_proof(&h, &tree, 4, 3),
        Err(ProofError::SizesOutOfOrder { .. })
    ));
    assert!(consistency_proof(&h, &tree, 0, 5).unwrap().is_empty());
    assert!(consistency_proof(&h, &tree, 5, 5).unwrap().is_empty());
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out.0[bit / 8] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_flipped_bit_in_an_inclusion_proof_leaf_or_root_is_rejected(
        n in 1usize..300, m_seed in any::<u64>(), which in any::<u16>(), bit in 0usize..256
    ) {
        let h = Blake3Tree;
        let leaves = leaf_hashes(&h, n);
        let tree = tree_of(&h, &leaves);
        let m = (m_seed % n as u64) as usize;
        let root = tree.root(&h);
        let proof = inclusion_proof(&h, &tree, m as u64, n as u64).unwrap();
        prop_assert!(verify_inclusion(&h, &leaves[m], m as u64, n as u64, &proof, &root).is_ok());
        prop_assert!(verify_inclusion(&h, &flip(&leaves[m], bit), m as u64, n as u64, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&h, &leaves[m], m as u64, n as u64, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = usize::from(which) % bad.len();
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_inclusion(&h, &leaves[m], m as u64, n as u64, &bad, &root).is_err());
        }
    }

    #[test]
    fn a_proof_for_one_tree_size_is_rejected_for_another(
        n in 2usize..300, other in 1usize..300, m_seed in any::<u64>()
    ) {
        prop_assume!(other != n);
        let h = Blake3Tree;
        let leaves = leaf_hashes(&h, n.max(other));
        let tree = tree_of(&h, &leaves);
        let m = (m_seed % n.min(other) as u64) as usize;
        let proof = inclusion_proof(&h, &tree, m as u64, n as u64).unwrap();
        let other_root = mth(&h, &leaves[..other]);
        prop_assert!(verify_inclusion(&h, &leaves[m], m as u64, other as u64, &proof, &other_root).is_err());
    }

    #[test]
    fn any_flipped_bit_in_a_consistency_proof_or_root_is_rejected(
        n in 2usize..300, m_seed in any::<u64>(), which in any::<u16>(), bit in 0usize..256
    ) {
        let h = Blake3Tree;
        let leaves = leaf_hashes(&h, n + 1);
        let tree = tree_of(&h, &leaves);
        let m = 1 + (m_seed % (n as u64 - 1)) as usize;
        let (old_root, new_root) = (mth(&h, &leaves[..m]), mth(&h, &leaves[..n]));
        let next_root = mth(&h, &leaves);
        let proof = consistency_proof(&h, &tree, m as u64, n as u64).unwrap();
        let (m, n) = (m as u64, n as u64);
        prop_assert!(verify_consistency(&h, m, n, &old_root, &new_root, &proof).is_ok());
        prop_assert!(verify_consistency(&h, m, n, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(&h, m, n, &old_root, &flip(&new_root, bit), &proof).is_err());
        let mut bad = proof.clone();
        let i = usize::from(which) % bad.len();
        bad[i] = flip(&bad[i], bit);
        prop_assert!(verify_consistency(&h, m, n, &old_root, &new_root, &bad).is_err());
        prop_assert!(verify_consistency(&h, m, n + 1, &old_root, &next_root, &proof).is_err());
    }
}

// ---- RFC 6962 / 9162 known answers (SHA-256), from transparency-dev/merkle's testdata. ----

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

/// The eight leaves of the Certificate Transparency reference tests.
fn ct_leaves() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        (0x60..=0x6f).collect(),
    ]
}

const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn sha256_tree_reproduces_the_rfc_known_answer_roots_and_proofs() {
    let s = Sha256Tree;
    assert_eq!(
        s.hash_empty(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let mut tree = MemoryTree::new();
    for (i, leaf) in ct_leaves().iter().enumerate() {
        tree.push(&s, s.hash_leaf(leaf));
        assert_eq!(tree.root(&s), h(CT_ROOTS[i]), "root of size {}", i + 1);
    }
    let inclusion: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let leaves = ct_leaves();
    for (index, size, want) in inclusion {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        assert_eq!(inclusion_proof(&s, &tree, index, size).unwrap(), want);
        let leaf = s.hash_leaf(&leaves[index as usize]);
        verify_inclusion(
            &s,
            &leaf,
            index,
            size,
            &want,
            &h(CT_ROOTS[size as usize - 1]),
        )
        .unwrap();
    }
    let consistency: [(u64, u64, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, want) in consistency {
        let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
        assert_eq!(
            consistency_proof(&s, &tree, old, new).unwrap(),
            want,
            "{old}->{new}"
        );
        let (r1, r2) = (h(CT_ROOTS[old as usize - 1]), h(CT_ROOTS[new as usize - 1]));
        verify_consistency(&s, old, new, &r1, &r2, &want).unwrap();
        assert!(
            verify_consistency(&s, old, new, &r2, &r1, &want).is_err(),
            "swapped roots"
        );
    }
}
