use super::*;
use crate::hash::{Hash, entry_hash};
use proptest::prelude::*;

fn sample_event() -> ConsentEvent {
    ConsentEvent {
        customer_id: "acme".into(),
        subject_id: "subj-42".into(),
        purposes: Purposes::from([
            ("analytics".to_string(), Choice::Denied),
            ("marketing".to_string(), Choice::Granted),
        ]),
        notice_id: "banner".into(),
        notice_version: "v3".into(),
        capture_method: CaptureMethod::BannerCustom,
        jurisdiction: "EU".into(),
        gpc: false,
        tcf_string: Some("CP1234".into()),
        gpp_string: None,
        evidence: Evidence {
            ip_address: Some("192.0.2.1".into()),
            user_agent: Some("Mozilla/5.0".into()),
            page_url: None,
        },
        occurred_at_ms: 1_767_225_600_000,
        expires_at_ms: Some(1_801_353_600_000),
        idempotency_key: Some("req-1".into()),
    }
}

fn sample_entry() -> Entry {
    Entry {
        shard_id: 0,
        seq: 0,
        recorded_at_ms: 1_767_225_600_123,
        prev_hash: Hash::ZERO,
        customer_id: "acme".into(),
        body: EntryBody::Consent(ConsentRecord::from_event(&sample_event(), Hash([7u8; 32]))),
    }
}

#[test]
fn an_event_taken_apart_by_moving_gives_the_parts_copying_gives() {
    // Proves: the write path's `into_parts` (no string copied) makes the same ledger part,
    // personal record and customer as `from_event` and `personal_record`, so the golden
    // bytes below hold for what the write path stores.
    let event = sample_event();
    let commitment = Hash([7u8; 32]);
    let copied = (
        event.customer_id.clone(),
        ConsentRecord::from_event(&event, commitment),
        event.personal_record(),
    );
    let parts = event.into_parts(commitment);
    assert_eq!((parts.customer_id, parts.record, parts.personal), copied);
}

#[test]
fn golden_entry_bytes_match_the_design_document() {
    // The same hex and hash are printed in docs/design.md; a change here is a format change.
    let bytes = sample_entry().encode();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_ENTRY_HEX);
    assert_eq!(entry_hash(&bytes).to_hex(), GOLDEN_ENTRY_HASH);
}

const GOLDEN_ENTRY_HEX: &str = "01010000000000000000000000000000019b76daa87b00000000000000000000000000000000000000000000000000000000000000000000000461636d6507070707070707070707070707070707070707070707070707070707070707070000000662616e6e657200000002763303000000024555000000019b76daa80001000001a3690a9c0001000000057265712d310000000200000009616e616c797469637302000000096d61726b6574696e6701";
const GOLDEN_ENTRY_HASH: &str = "5bdd781d905d71deeab9af6a071a9d22f254d7d8c94ac1e6b1f4a4cf3151cc00";

fn sample_erasure() -> Entry {
    Entry {
        shard_id: 0,
        seq: 5,
        recorded_at_ms: 1_767_225_700_000,
        prev_hash: Hash([0x11; 32]),
        customer_id: "acme".into(),
        body: EntryBody::Erasure(ErasureRecord {
            cause: ErasureCause::SubjectRequest,
            reason: "ticket 42".into(),
            erased_seqs: vec![0, 3],
        }),
    }
}

#[test]
fn golden_erasure_entry_bytes_match_the_design_document() {
    // Computed independently (Python struct + blake3) and printed in docs/design.md.
    let bytes = sample_erasure().encode();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_ERASURE_HEX);
    assert_eq!(entry_hash(&bytes).to_hex(), GOLDEN_ERASURE_HASH);
    assert_eq!(Entry::decode(&bytes).unwrap(), sample_erasure());
}

const GOLDEN_ERASURE_HEX: &str = "01020000000000000000000000050000019b76dc2ea011111111111111111111111111111111111111111111111111111111111111110000000461636d6501000000097469636b65742034320000000200000000000000000000000000000003";
const GOLDEN_ERASURE_HASH: &str =
    "f57193fae86866cac8827dab6a155e3c5df4f79af82c722805f41c95e60d6cd7";

#[test]
fn erasures_that_name_no_entry_a_later_one_or_out_of_order_ones_do_not_decode() {
    let with = |seqs: Vec<u64>| {
        let mut e = sample_erasure();
        let EntryBody::Erasure(r) = &mut e.body else {
            panic!("the sample is an erasure")
        };
        r.erased_seqs = seqs;
        Entry::decode(&e.encode())
    };
    assert!(with(vec![]).is_err(), "empty");
    assert!(with(vec![3, 0]).is_err(), "out of order");
    assert!(with(vec![3, 3]).is_err(), "repeated");
    assert!(with(vec![0, 5]).is_err(), "names itself");
    assert!(with(vec![0, 4]).is_ok());
    let bytes = sample_erasure().encode();
    for len in 0..bytes.len() {
        assert!(
            Entry::decode(&bytes[..len]).is_err(),
            "prefix {len} decoded"
        );
    }
    let mut bad_cause = bytes.clone();
    bad_cause[62] = 9;
    assert!(matches!(
        Entry::decode(&bad_cause),
        Err(DecodeError::BadValue {
            field: "erasure cause",
            ..
        })
    ));
}

#[test]
fn entry_decoding_inverts_encoding() {
    let e = sample_entry();
    assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
}

#[test]
fn the_borrowed_view_reads_the_same_fields_as_the_owned_entry() {
    // Proves: the audit's allocation-free view and `Entry` agree field by field, for both
    // kinds, through the accessors the audit uses (purposes, erased seqs).
    for e in [sample_entry(), sample_erasure()] {
        let bytes = e.encode();
        let v = EntryView::decode(&bytes).unwrap();
        assert_eq!(v.to_entry(), e);
        assert_eq!((v.seq, v.customer_id), (e.seq, e.customer_id.as_str()));
        match (v.consent(), e.consent()) {
            (Some(vc), Some(c)) => {
                let names: Vec<(String, Choice)> = vc
                    .purposes
                    .iter()
                    .map(|(p, ch)| (p.to_string(), ch))
                    .collect();
                assert_eq!(names, c.purposes);
                assert_eq!(vc.purposes.len(), c.purposes.len());
                assert_eq!(vc.expires_at_ms, c.expires_at_ms);
            }
            (None, None) => {}
            _ => panic!("kinds differ"),
        }
        match (v.erasure(), e.erasure()) {
            (Some(ve), Some(er)) => {
                assert_eq!(ve.erased_seqs().collect::<Vec<_>>(), er.erased_seqs);
            }
            (None, None) => {}
            _ => panic!("kinds differ"),
        }
    }
}

#[test]
fn every_truncation_of_an_entry_is_rejected() {
    let bytes = sample_entry().encode();
    for len in 0..bytes.len() {
        assert!(
            Entry::decode(&bytes[..len]).is_err(),
            "prefix {len} decoded"
        );
    }
}

#[test]
fn unsorted_purposes_and_unknown_versions_do_not_decode() {
    let mut e = sample_entry();
    let EntryBody::Consent(c) = &mut e.body else {
        panic!("the sample is a consent entry")
    };
    c.purposes.reverse();
    assert_eq!(
        Entry::decode(&e.encode()),
        Err(DecodeError::NotCanonical(
            "purposes must be sorted by name and unique"
        ))
    );
    let mut bytes = sample_entry().encode();
    bytes[0] = 2;
    assert_eq!(
        Entry::decode(&bytes),
        Err(DecodeError::UnsupportedVersion(2))
    );
    let mut bytes = sample_entry().encode();
    bytes[1] = 9;
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::BadValue { field: "kind", .. })
    ));
}

#[test]
fn personal_record_round_trips_and_rejects_trailing_bytes() {
    let p = sample_event().personal_record();
    let mut bytes = p.encode();
    assert_eq!(PersonalRecord::decode(&bytes).unwrap(), p);
    bytes.push(0);
    assert!(PersonalRecord::decode(&bytes).is_err());
}

#[test]
fn an_events_personal_record_encodes_the_same_borrowed_or_copied() {
    // Proves: the write path's encoding from the event's own fields is byte for byte the
    // record's canonical encoding, with and without the optional fields.
    let full = sample_event();
    assert_eq!(
        full.encode_personal_record(),
        full.personal_record().encode()
    );
    let mut bare = sample_event();
    bare.tcf_string = None;
    bare.gpp_string = None;
    bare.evidence = Default::default();
    assert_eq!(
        bare.encode_personal_record(),
        bare.personal_record().encode()
    );
}

#[test]
fn request_digest_changes_with_any_field_including_personal_ones() {
    let a = sample_event();
    let mut b = a.clone();
    b.evidence.user_agent = Some("curl".into());
    let mut c = a.clone();
    c.purposes.insert("ads".into(), Choice::Granted);
    assert_eq!(request_digest(&a), request_digest(&a.clone()));
    assert_ne!(request_digest(&a), request_digest(&b));
    assert_ne!(request_digest(&a), request_digest(&c));
}

#[test]
fn validation_names_the_field_that_breaks_a_limit() {
    assert!(validate_event(&sample_event()).is_ok());
    type Mutation = Box<dyn Fn(&mut ConsentEvent)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("subjectId", Box::new(|e| e.subject_id = "x".repeat(257))),
        ("subjectId", Box::new(|e| e.subject_id.clear())),
        ("purposes", Box::new(|e| e.purposes.clear())),
        (
            "purposes",
            Box::new(|e| {
                e.purposes.insert("Bad Name".into(), Choice::Granted);
            }),
        ),
        (
            "purposes",
            Box::new(|e| {
                for i in 0..65 {
                    e.purposes.insert(format!("p{i}"), Choice::Granted);
                }
            }),
        ),
        ("customerId", Box::new(|e| e.customer_id = "a/b".into())),
        (
            "tcfString",
            Box::new(|e| e.tcf_string = Some("x".repeat(16 * 1024 + 1))),
        ),
        (
            "expiresAt",
            Box::new(|e| e.expires_at_ms = Some(e.occurred_at_ms)),
        ),
        ("occurredAt", Box::new(|e| e.occurred_at_ms = -1)),
        (
            "idempotencyKey",
            Box::new(|e| e.idempotency_key = Some(String::new())),
        ),
    ];
    for (field, mutate) in cases {
        let mut e = sample_event();
        mutate(&mut e);
        assert_eq!(validate_event(&e).unwrap_err().field, field);
    }
}

fn arb_event() -> impl Strategy<Value = ConsentEvent> {
    (
        "[a-z]{1,8}",
        ".{1,40}",
        prop::collection::btree_map("[a-z0-9_.:-]{1,12}", any::<bool>(), 1..6),
        (".{1,20}", ".{1,10}", 0u8..8, ".{1,5}", any::<bool>()),
        (
            proptest::option::of(".{0,30}"),
            proptest::option::of(".{0,30}"),
        ),
        (
            0i64..4_000_000_000_000,
            proptest::option::of(1i64..1_000_000),
        ),
        proptest::option::of("[a-z0-9]{1,16}"),
    )
        .prop_map(
            |(
                customer,
                subject,
                purposes,
                (nid, nver, method, jur, gpc),
                (tcf, ua),
                (at, exp),
                key,
            )| {
                ConsentEvent {
                    customer_id: customer,
                    subject_id: subject,
                    purposes: purposes
                        .into_iter()
                        .map(|(k, g)| (k, if g { Choice::Granted } else { Choice::Denied }))
                        .collect(),
                    notice_id: nid,
                    notice_version: nver,
                    capture_method: CaptureMethod::ALL[usize::from(method)],
                    jurisdiction: jur,
                    gpc,
                    tcf_string: tcf,
                    gpp_string: None,
                    evidence: Evidence {
                        ip_address: None,
                        user_agent: ua,
                        page_url: None,
                    },
                    occurred_at_ms: at,
                    expires_at_ms: exp.map(|d| at + d),
                    idempotency_key: key,
                }
            },
        )
}

/// The consent entry of `event` at `seq` of `shard`, committing to `commitment`.
fn consent_entry(event: &ConsentEvent, seq: u64, shard: u32, commitment: Hash) -> Entry {
    Entry {
        shard_id: shard,
        seq,
        recorded_at_ms: event.occurred_at_ms,
        prev_hash: entry_hash(&seq.to_be_bytes()),
        customer_id: event.customer_id.clone(),
        body: EntryBody::Consent(ConsentRecord::from_event(event, commitment)),
    }
}

proptest! {
    #[test]
    fn any_entry_round_trips_byte_for_byte(event in arb_event(), seq in any::<u64>(), shard in any::<u32>()) {
        let entry = consent_entry(&event, seq, shard, Hash([1; 32]));
        let bytes = entry.encode();
        let back = Entry::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &entry);
        prop_assert_eq!(back.encode(), bytes);
        let personal = event.personal_record();
        prop_assert_eq!(PersonalRecord::decode(&personal.encode()).unwrap(), personal);
    }

    #[test]
    fn a_stored_events_request_digest_equals_the_submitted_events(event in arb_event(), seq in any::<u64>()) {
        // Proves: the audit's digest from stored bytes is the write path's digest.
        let bytes = consent_entry(&event, seq, 3, Hash([9; 32])).encode();
        let view = crate::format::EntryView::decode(&bytes).unwrap();
        let stored = stored_request_digest(&view, &bytes, &event.encode_personal_record());
        prop_assert_eq!(stored, Some(request_digest(&event)));
    }
}

#[test]
fn golden_personal_record_and_commitment_match_an_independent_implementation() {
    // Bytes, commitment and leaf hash were computed with Python's `blake3` package from
    // the layout in docs/design.md, not with this crate.
    let bytes = sample_event().personal_record().encode();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "01000000077375626a2d343201000000064350313233340001000000093139322e302e322e31010000000b4d6f7a696c6c612f352e3000"
    );
    assert_eq!(
        crate::hash::personal_commitment(&[1u8; 32], &bytes).to_hex(),
        "d3a46ca79854920357a2beee15f80a76b2aef0bf29bd303977adc9cae0d11483"
    );
    use crate::merkle::TreeHasher;
    assert_eq!(
        crate::merkle::Blake3Tree
            .hash_leaf(&sample_entry().encode())
            .to_hex(),
        "7154404f678e840cb2998cdd6e1688aea63a0ef38200abeed6cdffe997170dbc"
    );
}

#[test]
fn reassembling_an_entry_and_its_personal_record_gives_back_the_submitted_event() {
    let event = sample_event();
    let entry = Entry {
        body: EntryBody::Consent(ConsentRecord::from_event(&event, Hash([7; 32]))),
        ..sample_entry()
    };
    assert_eq!(
        ConsentEvent::reassemble(&entry, event.personal_record()),
        event
    );
}

proptest! {
    #[test]
    fn an_event_id_is_ev_then_the_padded_hex_of_shard_and_seq_and_parses_back(
        shard in any::<u32>(),
        seq in any::<u64>(),
    ) {
        // Proves: the digit-by-digit id is exactly the documented `ev` + 8 + 16 lowercase
        // hex digits, and `parse_event_id` inverts it.
        let id = event_id(shard, seq);
        prop_assert_eq!(&id, &format!("ev{shard:08x}{seq:016x}"));
        prop_assert_eq!(parse_event_id(&id), Some((shard, seq)));
    }
}

proptest! {
    /// Proves: `Purposes` holds what a map of name to choice holds, in name order with each
    /// name once, whatever order the names come in; `try_insert` refuses a name it holds and
    /// `remove` and `get` find names wherever they sit.
    #[test]
    fn purposes_behave_as_a_sorted_map(
        items in proptest::collection::vec(("[a-e]{1,2}", any::<bool>()), 0..24),
    ) {
        let choice = |g: bool| if g { Choice::Granted } else { Choice::Denied };
        let mut map = std::collections::BTreeMap::new();
        let mut by_insert = Purposes::new();
        let mut first_only = Purposes::new();
        for (name, g) in &items {
            prop_assert_eq!(by_insert.insert(name.clone(), choice(*g)), map.insert(name.clone(), choice(*g)));
            let taken = first_only.get(name).is_some();
            prop_assert_eq!(first_only.try_insert(name.clone(), choice(*g)).is_err(), taken);
        }
        let collected: Purposes = items.iter().map(|(n, g)| (n.clone(), choice(*g))).collect();
        let expected: Vec<(String, Choice)> = map.clone().into_iter().collect();
        prop_assert_eq!(collected.clone().into_vec(), expected.clone());
        prop_assert_eq!(by_insert.clone().into_vec(), expected);
        prop_assert_eq!(first_only.len(), map.len());
        let mut shrinking = collected;
        for name in map.keys() {
            prop_assert_eq!(shrinking.get(name), map.get(name));
            prop_assert_eq!(shrinking.remove(name), map.get(name).copied());
            prop_assert_eq!(shrinking.get(name), None);
        }
        prop_assert!(shrinking.is_empty());
    }
}
