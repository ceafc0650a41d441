//! Entries decoded in place: the one strict decoder of the entry format.
//!
//! [`EntryView::decode`] checks everything [`Entry::decode`] promises (version, kind,
//! canonical order, limits, UTF-8) but borrows its strings from the bytes instead of
//! copying them, so that a whole-ledger audit decodes millions of entries without one
//! allocation each. [`Entry::decode`] is this decoder followed by [`EntryView::to_entry`].

use super::codec::{DecodeError, Reader};
use super::entry::{
    ConsentRecord, ENTRY_FORMAT_VERSION, Entry, EntryBody, ErasureCause, ErasureRecord,
    KIND_CONSENT, KIND_ERASURE,
};
use super::event::{CaptureMethod, Choice};
use super::limits::{MAX_ERASED_PER_ENTRY, MAX_ERASURE_REASON_BYTES};
use crate::hash::Hash;

/// An [`Entry`] whose strings borrow from its canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// Shard that owns the entry.
    pub shard_id: u32,
    /// Position in the shard's journal.
    pub seq: u64,
    /// Server time of the commit (Unix ms).
    pub recorded_at_ms: i64,
    /// Chain hash of the previous entry.
    pub prev_hash: Hash,
    /// Customer (tenant) the entry belongs to.
    pub customer_id: &'a str,
    /// The kind-specific part.
    pub body: BodyView<'a>,
}

/// What an entry records, borrowed ([`EntryBody`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyView<'a> {
    /// A consent event (kind 1).
    Consent(ConsentView<'a>),
    /// An erasure of earlier entries' personal records (kind 2).
    Erasure(ErasureView<'a>),
}

/// A [`ConsentRecord`] whose strings borrow from the entry's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentView<'a> {
    /// `blake3(salt ‖ personal record bytes)`.
    pub personal_commitment: Hash,
    /// Notice shown to the person.
    pub notice_id: &'a str,
    /// Version of that notice.
    pub notice_version: &'a str,
    /// How the choice was captured.
    pub capture_method: CaptureMethod,
    /// Legal regime applied.
    pub jurisdiction: &'a str,
    /// Global Privacy Control signal present.
    pub gpc: bool,
    /// Client time of the decision (Unix ms).
    pub occurred_at_ms: i64,
    /// Expiry of the consent (Unix ms), if any.
    pub expires_at_ms: Option<i64>,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
    /// Purpose choices, sorted by name bytes, names unique.
    pub purposes: PurposesView<'a>,
}

/// The purpose list of a consent entry, already checked; iterate with
/// [`PurposesView::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurposesView<'a> {
    /// How many (name, choice) pairs `bytes` holds.
    count: u32,
    /// The encoded pairs (name as length-prefixed UTF-8, then the choice byte).
    bytes: &'a [u8],
}

/// An [`ErasureRecord`] whose reason and list borrow from the entry's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureView<'a> {
    /// What caused the erasure.
    pub cause: ErasureCause,
    /// The caller's reason.
    pub reason: &'a str,
    /// The erased sequence numbers, 8 bytes big-endian each, already checked increasing.
    erased: &'a [u8],
}

/// The fixed fields every entry starts with: what the hash chain links. Decoding them does
/// not read the body, so it is no check that the whole entry is canonical: a caller that
/// skips [`EntryView::decode`] must decode every entry strictly elsewhere (the audit's index
/// check does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView {
    /// Entry kind byte, one of the known kinds.
    pub kind: u8,
    /// Shard the entry belongs to.
    pub shard_id: u32,
    /// Sequence number within the shard.
    pub seq: u64,
    /// When the shard wrote it (Unix ms).
    pub recorded_at_ms: i64,
    /// Chain hash of the entry before it.
    pub prev_hash: Hash,
}

impl HeaderView {
    /// Decodes the version, kind and chained fields at the start of entry bytes.
    pub fn decode(bytes: &[u8]) -> Result<HeaderView, DecodeError> {
        HeaderView::read(&mut Reader::new(bytes))
    }

    fn read(r: &mut Reader<'_>) -> Result<HeaderView, DecodeError> {
        let version = r.u8()?;
        if version != ENTRY_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        if kind != KIND_CONSENT && kind != KIND_ERASURE {
            return Err(DecodeError::BadValue {
                field: "kind",
                value: u64::from(kind),
            });
        }
        Ok(HeaderView {
            kind,
            shard_id: r.u32()?,
            seq: r.u64()?,
            recorded_at_ms: r.i64()?,
            prev_hash: r.hash()?,
        })
    }
}

impl<'a> EntryView<'a> {
    /// Strict decoding of canonical entry bytes (the contract of [`Entry::decode`]).
    pub fn decode(bytes: &'a [u8]) -> Result<EntryView<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        let header = HeaderView::read(&mut r)?;
        let customer_id = r.str_ref()?;
        let body = if header.kind == KIND_CONSENT {
            BodyView::Consent(decode_consent(&mut r)?)
        } else {
            BodyView::Erasure(decode_erasure(&mut r, header.seq)?)
        };
        r.finish()?;
        Ok(EntryView {
            shard_id: header.shard_id,
            seq: header.seq,
            recorded_at_ms: header.recorded_at_ms,
            prev_hash: header.prev_hash,
            customer_id,
            body,
        })
    }

    /// The chained fields of this entry.
    pub fn header(&self) -> HeaderView {
        HeaderView {
            kind: match self.body {
                BodyView::Consent(_) => KIND_CONSENT,
                BodyView::Erasure(_) => KIND_ERASURE,
            },
            shard_id: self.shard_id,
            seq: self.seq,
            recorded_at_ms: self.recorded_at_ms,
            prev_hash: self.prev_hash,
        }
    }

    /// The consent part, when this entry is a consent event.
    pub fn consent(&self) -> Option<&ConsentView<'a>> {
        match &self.body {
            BodyView::Consent(c) => Some(c),
            BodyView::Erasure(_) => None,
        }
    }

    /// The erasure part, when this entry is an erasure.
    pub fn erasure(&self) -> Option<&ErasureView<'a>> {
        match &self.body {
            BodyView::Erasure(e) => Some(e),
            BodyView::Consent(_) => None,
        }
    }

    /// The owned entry.
    pub fn to_entry(&self) -> Entry {
        let body = match &self.body {
            BodyView::Consent(c) => EntryBody::Consent(ConsentRecord {
                personal_commitment: c.personal_commitment,
                notice_id: c.notice_id.to_string(),
                notice_version: c.notice_version.to_string(),
                capture_method: c.capture_method,
                jurisdiction: c.jurisdiction.to_string(),
                gpc: c.gpc,
                occurred_at_ms: c.occurred_at_ms,
                expires_at_ms: c.expires_at_ms,
                idempotency_key: c.idempotency_key.map(str::to_string),
                purposes: c
                    .purposes
                    .iter()
                    .map(|(p, ch)| (p.to_string(), ch))
                    .collect(),
            }),
            BodyView::Erasure(e) => EntryBody::Erasure(ErasureRecord {
                cause: e.cause,
                reason: e.reason.to_string(),
                erased_seqs: e.erased_seqs().collect(),
            }),
        };
        Entry {
            shard_id: self.shard_id,
            seq: self.seq,
            recorded_at_ms: self.recorded_at_ms,
            prev_hash: self.prev_hash,
            customer_id: self.customer_id.to_string(),
            body,
        }
    }
}

impl<'a> PurposesView<'a> {
    /// Number of purposes.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none (never, in a valid consent entry).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (name, choice) pairs in their stored order (sorted by name bytes).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Choice)> + use<'a> {
        self.iter_bytes().map(|(name, choice)| {
            let name = std::str::from_utf8(name).expect("checked when the entry was decoded");
            (name, choice)
        })
    }

    /// [`PurposesView::iter`] with names as bytes: for comparisons, which need not check
    /// the UTF-8 again.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&'a [u8], Choice)> + use<'a> {
        let mut r = Reader::new(self.bytes);
        (0..self.count).map(move |_| {
            let name = r.bytes().expect("checked when the entry was decoded");
            let choice = Choice::from_byte(r.u8().expect("checked when the entry was decoded"))
                .expect("checked when the entry was decoded");
            (name, choice)
        })
    }
}

impl<'a> ErasureView<'a> {
    /// The erased sequence numbers, increasing.
    pub fn erased_seqs(&self) -> impl Iterator<Item = u64> + use<'a> {
        self.erased
            .chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8-byte chunks")))
    }
}

fn decode_consent<'a>(r: &mut Reader<'a>) -> Result<ConsentView<'a>, DecodeError> {
    let personal_commitment = r.hash()?;
    let notice_id = r.str_ref()?;
    let notice_version = r.str_ref()?;
    let method = r.u8()?;
    let capture_method = CaptureMethod::from_byte(method).ok_or(DecodeError::BadValue {
        field: "capture_method",
        value: u64::from(method),
    })?;
    let jurisdiction = r.str_ref()?;
    let gpc = r.bool("gpc")?;
    let occurred_at_ms = r.i64()?;
    let expires_at_ms = r.opt_i64("expires_at_ms")?;
    let idempotency_key = if r.bool("idempotency_key")? {
        Some(r.str_ref()?)
    } else {
        None
    };
    let count = r.u32()?;
    let start = r.position();
    let mut last: Option<&str> = None;
    for _ in 0..count {
        let name = r.str_ref()?;
        let b = r.u8()?;
        Choice::from_byte(b).ok_or(DecodeError::BadValue {
            field: "choice",
            value: u64::from(b),
        })?;
        if last.is_some_and(|last| last.as_bytes() >= name.as_bytes()) {
            return Err(DecodeError::NotCanonical(
                "purposes must be sorted by name and unique",
            ));
        }
        last = Some(name);
    }
    Ok(ConsentView {
        personal_commitment,
        notice_id,
        notice_version,
        capture_method,
        jurisdiction,
        gpc,
        occurred_at_ms,
        expires_at_ms,
        idempotency_key,
        purposes: PurposesView {
            count,
            bytes: r.since(start),
        },
    })
}

fn decode_erasure<'a>(r: &mut Reader<'a>, own_seq: u64) -> Result<ErasureView<'a>, DecodeError> {
    let b = r.u8()?;
    let cause = ErasureCause::from_byte(b).ok_or(DecodeError::BadValue {
        field: "erasure cause",
        value: u64::from(b),
    })?;
    let reason = r.str_ref()?;
    if reason.len() > MAX_ERASURE_REASON_BYTES {
        return Err(DecodeError::NotCanonical("erasure reason is too long"));
    }
    let count = r.u32()?;
    if count == 0 || count as usize > MAX_ERASED_PER_ENTRY {
        return Err(DecodeError::NotCanonical(
            "an erasure names 1..=MAX_ERASED_PER_ENTRY entries",
        ));
    }
    let start = r.position();
    let mut last: Option<u64> = None;
    for _ in 0..count {
        let seq = r.u64()?;
        if last.is_some_and(|last| last >= seq) || seq >= own_seq {
            return Err(DecodeError::NotCanonical(
                "erased sequence numbers must increase and precede the erasure",
            ));
        }
        last = Some(seq);
    }
    Ok(ErasureView {
        cause,
        reason,
        erased: r.since(start),
    })
}
