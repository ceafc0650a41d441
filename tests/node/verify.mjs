// An independent verifier of Assent receipts, checkpoints, consistency proofs, exports and
// whole journals, written from docs/receipts.md and docs/design.md §2–§3 alone (no Assent
// code was read for it), with the noble implementations of blake3, SHA-256 and ed25519. It
// exists to show that the documents are enough for a third party: tests/verify.rs runs it
// over tests/vectors and over artefacts fresh from a real server (and thousands of forged
// variants of them), and compares its verdicts with `assent verify`'s.
//
//   node verify.mjs receipt FILE [--public-key FILE | --trusted-keys FILE]
//   node verify.mjs receipts [--public-key FILE | --trusted-keys FILE] < JSON lines
//   node verify.mjs checkpoint FILE (--public-key FILE | --trusted-keys FILE)
//   node verify.mjs consistency --old NOTE --new NOTE --proof FILE [--public-key F | --trusted-keys F]
//   node verify.mjs export FILE [--public-key FILE | --trusted-keys FILE]
//   node verify.mjs journal FILE [--checkpoint NOTE]... [--public-key FILE | --trusted-keys FILE]
//
// Prints one JSON verdict a line ({"valid": true} or {"valid": false, "step": …, "detail": …})
// and exits 0 when valid, 1 when invalid, 2 on unusable input (`receipts` always exits 0).
import { createReadStream, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { blake3 } from "@noble/hashes/blake3.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ed25519 } from "@noble/curves/ed25519.js";

/** A failed verification step: `step` uses the names of tests/vectors/manifest.json. */
class Invalid extends Error {
  constructor(step, detail) {
    super(detail);
    this.step = step;
  }
}
/** Input that cannot be verified at all (a missing file, a key file without keys). */
class Unusable extends Error {}

const fail = (step, detail) => {
  throw new Invalid(step, detail);
};
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const hex = (b) => Buffer.from(b).toString("hex");
const b64 = (b) => Buffer.from(b).toString("base64");

/** Standard base64 with padding, canonical (re-encoding gives the same text) or `null`. */
function fromB64(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return null;
  const b = new Uint8Array(Buffer.from(s, "base64"));
  return b64(b) === s ? b : null;
}
/** 64 lowercase hex digits, or `null`. */
function fromHex32(s) {
  return typeof s === "string" && /^[0-9a-f]{64}$/.test(s) ? new Uint8Array(Buffer.from(s, "hex")) : null;
}
const u32be = (n) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const u64be = (n) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n);
  return b;
};

// ---- RFC 9162 §2.1 with blake3 (design.md §3) ----

const leafHash = (data) => blake3(cat(Uint8Array.of(0), data));
const nodeHash = (l, r) => blake3(cat(Uint8Array.of(1), l, r));

/** A growing RFC 9162 tree: the roots of its perfect subtrees, largest first. The root of
 * the leaves so far folds them right to left (the split at the largest power of two). */
class Frontier {
  constructor() {
    this.size = 0n;
    this.subtrees = []; // [height, hash]
  }
  push(leaf) {
    let hash = leaf;
    let height = 0;
    while (this.subtrees.length && this.subtrees[this.subtrees.length - 1][0] === height) {
      hash = nodeHash(this.subtrees.pop()[1], hash);
      height += 1;
    }
    this.subtrees.push([height, hash]);
    this.size += 1n;
  }
  root() {
    if (this.subtrees.length === 0) return blake3(new Uint8Array());
    let r = this.subtrees[this.subtrees.length - 1][1];
    for (let i = this.subtrees.length - 2; i >= 0; i--) r = nodeHash(this.subtrees[i][1], r);
    return r;
  }
}

/** RFC 9162 §2.1.3.2: does `path` prove `leaf` at `index` in the tree of `size` with `root`? */
function inclusionHolds(index, size, leaf, path, root) {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && eq(r, root);
}

/** RFC 9162 §2.1.4.2, with design.md §3's empty proofs between equal sizes and from 0. */
function consistencyHolds(first, second, firstRoot, secondRoot, path) {
  if (first > second) return false;
  if (first === second) return path.length === 0 && eq(firstRoot, secondRoot);
  if (first === 0n) return path.length === 0;
  if (path.length === 0) return false;
  const proof = (first & (first - 1n)) === 0n ? [firstRoot, ...path] : [...path];
  let fn = first - 1n;
  let sn = second - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = proof[0];
  let sr = proof[0];
  for (const c of proof.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return eq(fr, firstRoot) && eq(sr, secondRoot) && sn === 0n;
}

// ---- Entry and personal record format v1 (design.md §2) ----

/** A strict reader of the big-endian binary layouts: any misuse is `step` invalid. */
class Reader {
  constructor(bytes, step) {
    this.b = bytes;
    this.at = 0;
    this.step = step;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  take(n) {
    if (this.at + n > this.b.length) fail(this.step, `truncated at byte ${this.at}`);
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8() {
    return this.take(1)[0];
  }
  u32() {
    this.take(4);
    return this.view.getUint32(this.at - 4);
  }
  u64() {
    this.take(8);
    return this.view.getBigUint64(this.at - 8);
  }
  i64() {
    this.take(8);
    return this.view.getBigInt64(this.at - 8);
  }
  str() {
    const len = this.u32();
    const bytes = this.take(len);
    try {
      return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), bytes };
    } catch {
      fail(this.step, `invalid UTF-8 at byte ${this.at - len}`);
    }
  }
  bool() {
    const v = this.u8();
    if (v > 1) fail(this.step, `bool byte ${v} at ${this.at - 1}`);
    return v === 1;
  }
  opt(read) {
    return this.bool() ? read() : null;
  }
  end() {
    if (this.at !== this.b.length) fail(this.step, `${this.b.length - this.at} trailing bytes`);
  }
}

const byteOrder = (a, b) => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
};

/** The API's id of entry `seq` of shard `shardId`: `ev`, 8 then 16 lowercase hex digits. */
const eventIdOf = (e) => `ev${e.shardId.toString(16).padStart(8, "0")}${e.seq.toString(16).padStart(16, "0")}`;

/** design.md §2's capture method bytes 1..=8, by name. */
const CAPTURE_METHODS = [
  "BANNER_ACCEPT_ALL",
  "BANNER_REJECT_ALL",
  "BANNER_CUSTOM",
  "PREFERENCE_CENTRE",
  "GPC_SIGNAL",
  "API",
  "IMPORT",
  "WITHDRAWAL",
];

/** Parses an entry strictly (design.md §2). */
function parseEntry(bytes) {
  const r = new Reader(bytes, "entry");
  if (r.u8() !== 1) fail("entry", "unknown format version");
  const kind = r.u8();
  if (kind !== 1 && kind !== 2) fail("entry", `unknown kind ${kind}`);
  const e = { kind, shardId: r.u32(), seq: r.u64(), recordedAtMs: r.i64() };
  e.prevHash = r.take(32);
  e.customerId = r.str().text;
  if (kind === 1) {
    e.commitment = r.take(32);
    e.noticeId = r.str().text;
    e.noticeVersion = r.str().text;
    const method = r.u8();
    if (method < 1 || method > 8) fail("entry", `capture method ${method}`);
    e.captureMethod = CAPTURE_METHODS[method - 1];
    e.jurisdiction = r.str().text;
    e.gpc = r.bool();
    e.occurredAtMs = r.i64();
    e.expiresAtMs = r.opt(() => r.i64());
    e.idempotencyKey = r.opt(() => r.str().text);
    e.purposes = [];
    let last = null;
    for (let n = r.u32(); n > 0; n--) {
      const name = r.str();
      if (last && byteOrder(last, name.bytes) >= 0) fail("entry", "purposes not strictly increasing");
      last = name.bytes;
      const choice = r.u8();
      if (choice !== 1 && choice !== 2) fail("entry", `choice ${choice}`);
      e.purposes.push({ purpose: name.text, choice: choice === 1 ? "GRANTED" : "DENIED" });
    }
  } else {
    const cause = r.u8();
    if (cause !== 1 && cause !== 2) fail("entry", `erasure cause ${cause}`);
    if (r.str().bytes.length > 1024) fail("entry", "erasure reason over 1,024 bytes");
    const count = r.u32();
    if (count < 1 || count > 100000) fail("entry", `erasure count ${count}`);
    let prev = -1n;
    for (let i = 0; i < count; i++) {
      const s = r.u64();
      if (s <= prev || s >= e.seq) fail("entry", "erased seqs not increasing below the entry");
      prev = s;
    }
  }
  r.end();
  return e;
}

/** A personal record (format v1), its whole layout checked. */
function parsePersonal(bytes) {
  const r = new Reader(bytes, "format");
  if (r.u8() !== 1) fail("format", "unknown personal record version");
  const text = () => r.opt(() => r.str().text);
  const p = { subjectId: r.str().text, tcfString: text(), gppString: text() };
  p.evidence = { ipAddress: text(), userAgent: text(), pageUrl: text() };
  r.end();
  return p;
}

// ---- Checkpoints: C2SP signed notes (receipts.md §1) ----

/** Parses and re-serialises a checkpoint body; any difference is step `checkpoint`. */
function parseBody(body) {
  const lines = body.split("\n");
  if (lines.pop() !== "") fail("checkpoint", "the body does not end in a newline");
  if (lines.length < 5) fail("checkpoint", "too few lines");
  const [origin, total, root, numberLine, timeLine, ...shardLines] = lines;
  if (!/^[A-Za-z0-9./_-]{1,128}$/.test(origin)) fail("checkpoint", "bad origin");
  const number = /^assent-checkpoint (\d+)$/.exec(numberLine);
  const time = /^assent-time (\d+)$/.exec(timeLine);
  if (!number || !time) fail("checkpoint", "bad number or time line");
  const shards = shardLines.map((line, i) => {
    const m = /^assent-shard (\d+) (\d+) (\S+) (\S+)$/.exec(line);
    const rootBytes = m && fromB64(m[3]);
    const head = m && fromB64(m[4]);
    if (!m || BigInt(m[1]) !== BigInt(i) || rootBytes?.length !== 32 || head?.length !== 32)
      fail("checkpoint", `bad shard line ${i}`);
    return { id: i, size: BigInt(m[2]), root: rootBytes, head };
  });
  const leaves = shards.map((s) =>
    leafHash(cat(Uint8Array.of(1), u32be(s.id), u64be(s.size), s.root, s.head)),
  );
  const cp = {
    origin,
    number: BigInt(number[1]),
    time: BigInt(time[1]),
    total: shards.reduce((n, s) => n + s.size, 0n),
    root: leaves.reduce((f, leaf) => (f.push(leaf), f), new Frontier()).root(),
    shards,
  };
  const again = [
    origin,
    `${cp.total}`,
    b64(cp.root),
    `assent-checkpoint ${cp.number}`,
    `assent-time ${cp.time}`,
    ...shards.map((s) => `assent-shard ${s.id} ${s.size} ${b64(s.root)} ${b64(s.head)}`),
    "",
  ].join("\n");
  if (again !== body) fail("checkpoint", "total or combined root does not match, or the body is not canonical");
  return cp;
}

/** Splits a signed note at its last blank line: the body and its signature lines. */
function splitNote(note) {
  const at = note.lastIndexOf("\n\n");
  if (at < 0 || !note.endsWith("\n")) fail("checkpoint", "not a signed note");
  const sigs = note
    .slice(at + 2, -1)
    .split("\n")
    .map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      const raw = m && fromB64(m[2]);
      if (!raw || raw.length < 5) fail("checkpoint", "bad signature line");
      return { name: m[1], keyId: raw.subarray(0, 4), sig: raw.subarray(4) };
    });
  return { body: note.slice(0, at + 1), sigs };
}

const keyIdOf = (name, pub) =>
  sha256(cat(new TextEncoder().encode(name), Uint8Array.of(0x0a, 0x01), pub)).subarray(0, 4);

/** Pinned keys from `--public-key FILE` (base64 key; the name is the note's origin) or
 * `--trusted-keys FILE` (`name+keyid+b64(0x01 ‖ key)` lines, `#` comments). */
function loadKeys(args) {
  const pub = option(args, "--public-key");
  const trusted = option(args, "--trusted-keys");
  if (pub) {
    const key = fromB64(readText(pub).trim());
    if (key?.length !== 32) throw new Unusable("--public-key: not a base64 ed25519 key");
    return [{ name: null, key }];
  }
  if (!trusted) return null;
  const keys = readText(trusted)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      // The name has no `+` (receipts.md §1), the base64 key may.
      const [name, id, ...rest] = l.split("+");
      const k = rest.join("+");
      const raw = fromB64(k ?? "");
      if (raw?.length !== 33 || raw[0] !== 1 || hex(keyIdOf(name, raw.subarray(1))) !== id)
        throw new Unusable(`--trusted-keys: bad verifier key ${l}`);
      return { name, key: raw.subarray(1) };
    });
  if (keys.length === 0) throw new Unusable("--trusted-keys: no keys");
  return keys;
}

/** Step 4: a signature line of a pinned key verifies over the body. */
function checkSignature(note, cp, keys) {
  if (!keys) return null;
  for (const { name, key } of keys) {
    const signer = name ?? cp.origin;
    const id = keyIdOf(signer, key);
    for (const s of note.sigs) {
      if (s.name === signer && eq(s.keyId, id)) {
        if (s.sig.length === 64 && ed25519.verify(s.sig, new TextEncoder().encode(note.body), key))
          return `${signer}+${hex(id)}`;
        fail("signature", `the signature of ${signer}+${hex(id)} does not verify`);
      }
    }
  }
  fail("signature", "no signature by a pinned key");
}

function readCheckpoint(note) {
  const split = splitNote(note);
  return { split, cp: parseBody(split.body) };
}

// ---- Receipts (receipts.md §2–§3) ----

const RECEIPT_FIELDS = ["version", "eventId", "entry", "personal", "shardProof", "combinedProof", "checkpoint"];

/** Verifies a parsed receipt by receipts.md §3; returns what it proves. */
function verifyReceipt(r, keys) {
  const shape = (ok, what) => ok || fail("format", what);
  shape(r && typeof r === "object" && !Array.isArray(r), "not an object");
  shape(Object.keys(r).every((k) => RECEIPT_FIELDS.includes(k)), "unknown field");
  shape(r.version === 1, "version is not 1");
  const entry = fromB64(r.entry);
  shape(entry, "entry is not base64");
  const sp = r.shardProof;
  const cpf = r.combinedProof;
  for (const [p, names] of [
    [sp, ["shardId", "seq", "treeSize", "path"]],
    [cpf, ["leafIndex", "treeSize", "path"]],
  ]) {
    shape(p && typeof p === "object" && Object.keys(p).length === names.length, "bad proof object");
    shape(names.every((n) => n in p) && Array.isArray(p.path), "bad proof fields");
    shape(names.slice(0, -1).every((n) => Number.isSafeInteger(p[n]) && p[n] >= 0), "bad proof number");
  }
  const shardPath = sp.path.map(fromHex32);
  const combinedPath = cpf.path.map(fromHex32);
  shape(shardPath.every(Boolean) && combinedPath.every(Boolean), "a path hash is not 64 hex digits");
  shape(typeof r.checkpoint === "string", "checkpoint is not a string");

  // 1. The entry, its place and the event id.
  const e = parseEntry(entry);
  if (e.shardId !== sp.shardId || e.seq !== BigInt(sp.seq)) fail("entry", "shard or seq differ from the proof's");
  const wantId = eventIdOf(e);
  if (r.eventId !== wantId) fail("entry", `eventId is not ${wantId}`);
  // 2. The personal record opens the commitment.
  let personal = null;
  if (r.personal !== null) {
    const p = r.personal;
    shape(p && typeof p === "object" && Object.keys(p).length === 2, "bad personal object");
    const salt = fromB64(p.salt);
    const record = fromB64(p.record);
    shape(salt?.length === 32 && record, "bad personal salt or record");
    shape(e.kind === 1, "an erasure entry has no personal record");
    if (!eq(blake3(cat(salt, record)), e.commitment)) fail("personal-commitment", "blake3(salt ‖ record) differs");
    personal = parsePersonal(record);
  }
  // 3. The checkpoint; 4. its signature.
  const { split, cp } = readCheckpoint(r.checkpoint);
  const signer = checkSignature(split, cp, keys);
  // 5. The entry in its shard's tree at the signed size.
  const line = cp.shards[sp.shardId];
  if (!line || line.size !== BigInt(sp.treeSize)) fail("shard-head", "no shard line of that size");
  if (!inclusionHolds(BigInt(sp.seq), line.size, leafHash(entry), shardPath, line.root))
    fail("shard-inclusion", "the entry's leaf does not lead to the shard root");
  // 6. The shard head in the combined tree.
  if (cpf.leafIndex !== sp.shardId || cpf.treeSize !== cp.shards.length)
    fail("combined-inclusion", "leaf index or tree size differ from the checkpoint's");
  const head = cat(Uint8Array.of(1), u32be(line.id), u64be(line.size), line.root, line.head);
  if (!inclusionHolds(BigInt(cpf.leafIndex), BigInt(cpf.treeSize), leafHash(head), combinedPath, cp.root))
    fail("combined-inclusion", "the shard head does not lead to the combined root");
  const summary = {
    eventId: r.eventId,
    customer: e.customerId,
    subject: personal?.subjectId ?? null,
    checkpoint: `${cp.number}`,
    signer,
  };
  return { summary, entry: e, entryHash: blake3(entry), personal };
}

// ---- Consistency (receipts.md §4) ----

function verifyConsistency(oldNote, newNote, proof, keys) {
  const a = readCheckpoint(oldNote);
  const b = readCheckpoint(newNote);
  checkSignature(a.split, a.cp, keys);
  checkSignature(b.split, b.cp, keys);
  if (a.cp.origin !== b.cp.origin || a.cp.shards.length !== b.cp.shards.length)
    fail("checkpoints", "different ledgers or shard counts");
  if (b.cp.number < a.cp.number) fail("checkpoints", "the new checkpoint is older");
  const shards = proof?.shards ?? proof?.data?.consistencyProof?.shards;
  if (!Array.isArray(shards) || shards.length !== a.cp.shards.length)
    throw new Unusable("the proof does not list every shard");
  shards.forEach((s, i) => {
    const was = a.cp.shards[i];
    const now = b.cp.shards[i];
    if (!Array.isArray(s?.path) || !s.path.every(fromHex32)) throw new Unusable(`shard ${i}: no path of hashes`);
    const path = s.path.map(fromHex32);
    // Sizes and roots come from the notes; where the proof repeats them, they must agree.
    const agrees = (field, want) => !(field in s) || `${s[field]}` === want;
    if (
      !agrees("shardId", `${i}`) ||
      !agrees("oldSize", `${was.size}`) ||
      !agrees("newSize", `${now.size}`) ||
      !agrees("oldRoot", hex(was.root)) ||
      !agrees("newRoot", hex(now.root))
    )
      fail("consistency", `shard ${i}: the proof is not about these checkpoints`);
    if (!consistencyHolds(was.size, now.size, was.root, now.root, path))
      fail("consistency", `shard ${i}: the new tree does not extend the old one`);
  });
  return { from: `${a.cp.number}`, to: `${b.cp.number}` };
}

// ---- Exports (receipts.md §5–§6) ----

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** A shown instant as unix ms, or `undefined` when it is not an RFC 3339 instant. */
const shownMs = (v) => (typeof v === "string" && RFC3339.test(v) ? Date.parse(v) : undefined);
/** JSON values compared by content, object keys in any order. */
const sameJson = (a, b) => JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

/** Each exportable field: whether the shown value is the one the entry and record fix. */
const FIELDS = {
  id: (v, e) => v === eventIdOf(e),
  customerId: (v, e) => v === e.customerId,
  shard: (v, e) => v === e.shardId,
  sequence: (v, e) => v === `${e.seq}`,
  recordedAt: (v, e) => shownMs(v) === Number(e.recordedAtMs),
  occurredAt: (v, e) => shownMs(v) === Number(e.occurredAtMs),
  expiresAt: (v, e) => (e.expiresAtMs === null ? v === null : shownMs(v) === Number(e.expiresAtMs)),
  purposes: (v, e) => sameJson(v, e.purposes),
  noticeId: (v, e) => v === e.noticeId,
  noticeVersion: (v, e) => v === e.noticeVersion,
  captureMethod: (v, e) => v === e.captureMethod,
  jurisdiction: (v, e) => v === e.jurisdiction,
  gpc: (v, e) => v === e.gpc,
  idempotencyKey: (v, e) => v === e.idempotencyKey,
  entryHash: (v, e, p, hash) => v === hex(hash),
  prevHash: (v, e) => v === hex(e.prevHash),
  personalCommitment: (v, e) => v === hex(e.commitment),
  subjectId: (v, e, p) => v === (p?.subjectId ?? null),
  tcfString: (v, e, p) => v === (p?.tcfString ?? null),
  gppString: (v, e, p) => v === (p?.gppString ?? null),
  evidence: (v, e, p) => sameJson(v, p?.evidence ?? null),
};

/** Checks one exported event against its receipt (§6 steps 1–2); returns what was proven. */
function checkEvent(event, receipt, keys, seen, at) {
  if (receipt === undefined || receipt === null) throw new Unusable(`${at}: no receipt`);
  let proven;
  try {
    // Each distinct checkpoint's signature is checked once.
    proven = verifyReceipt(receipt, seen.has(receipt.checkpoint) ? null : keys);
  } catch (e) {
    if (e instanceof Invalid) e.message = `${at}: ${e.message}`;
    throw e;
  }
  seen.add(receipt.checkpoint);
  if (proven.entry.kind !== 1) fail("fields", `${at}: the receipt is of an erasure entry`);
  if (!("id" in event)) fail("fields", `${at}: the event shows no id`);
  for (const [name, value] of Object.entries(event)) {
    const check = FIELDS[name];
    if (!check) fail("fields", `${at}: \`${name}\` is not a field a receipt proves`);
    if (!check(value, proven.entry, proven.personal, proven.entryHash))
      fail("fields", `${at}: \`${name}\` is not what the receipt proves`);
  }
  return proven;
}

/** §6 step 3: per shard, journal order, each event once. */
function checkOrder(proven, last, at) {
  const { shardId, seq } = proven.entry;
  if (last.has(shardId) && seq <= last.get(shardId)) fail("order", `${at}: not after the event before it on shard ${shardId}`);
  last.set(shardId, seq);
}

/** The JSON lines of `assent export --receipts`, or a §5 subject export document. */
function verifyExport(text, keys) {
  const seen = new Set();
  const last = new Map();
  let doc = null;
  try {
    doc = JSON.parse(text);
  } catch {
    // JSON lines, parsed one at a time below.
  }
  if (doc && typeof doc === "object" && !Array.isArray(doc) && Array.isArray(doc.events)) return verifyDocument(doc, keys, seen, last);
  let events = 0;
  let erased = 0;
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let event;
    try {
      event = JSON.parse(line);
    } catch {
      throw new Unusable(`line ${i + 1} is not JSON`);
    }
    if (!event || typeof event !== "object" || Array.isArray(event)) throw new Unusable(`line ${i + 1} is not an object`);
    const { receipt, ...fields } = event;
    const proven = checkEvent(fields, receipt, keys, seen, `line ${i + 1}`);
    checkOrder(proven, last, `line ${i + 1}`);
    events += 1;
    erased += proven.personal === null ? 1 : 0;
  });
  return { events, erased };
}

/** A §5 document: its events as above, then their subject and the current state. */
function verifyDocument(doc, keys, seen, last) {
  if (doc.version !== 1) throw new Unusable("export document version is not 1");
  const state = new Map();
  doc.events.forEach((item, i) => {
    const at = `events[${i}]`;
    if (!item || typeof item.event !== "object" || item.event === null) throw new Unusable(`${at} has no event`);
    const proven = checkEvent(item.event, item.receipt, keys, seen, at);
    checkOrder(proven, last, at);
    const { entry, personal } = proven;
    if (entry.customerId !== doc.customerId || (personal && personal.subjectId !== doc.subjectId))
      fail("subject", `${at}: not an event of the document's customer and subject`);
    const eventId = eventIdOf(entry);
    for (const p of entry.purposes) state.set(p.purpose, { choice: p.choice, expiresAtMs: entry.expiresAtMs, eventId });
  });
  const shown = Array.isArray(doc.currentState) ? doc.currentState : [];
  const agrees =
    shown.length === state.size &&
    shown.every((c) => {
      const want = state.get(c?.purpose);
      if (!want || c.choice !== want.choice || c.eventId !== want.eventId) return false;
      return want.expiresAtMs === null ? c.expiresAt === null : shownMs(c.expiresAt) === Number(want.expiresAtMs);
    });
  if (!agrees) fail("current-state", "currentState is not what the events imply");
  return { events: doc.events.length, erased: 0 };
}

// ---- Whole journals (receipts.md §7) ----

/** One shard's journal as it streams past: chain head, Merkle frontier, size. */
class ShardWalk {
  constructor(id) {
    this.id = id;
    this.head = new Uint8Array(32);
    this.lastRecordedAtMs = null; // recorded_at of the entry before, which may not be later
    this.tree = new Frontier();
  }
  get size() {
    return this.tree.size;
  }
  push(entry) {
    this.head = blake3(entry);
    this.tree.push(leafHash(entry));
  }
  root() {
    return this.tree.root();
  }
}

/** The journal lines of `assent journal` against signed checkpoints, one line at a time
 * (memory: the checkpoints and each shard's frontier): every entry decodes, sits at its
 * place and links to the one before; each checkpoint's shard lines are the roots and chain
 * heads of the journal at their sizes, and no signed entry is missing. Checkpoint lines
 * come before the entries, as `assent journal` prints them. */
class JournalCheck {
  constructor(notes, keys) {
    this.keys = keys;
    this.checkpoints = [];
    this.due = new Map(); // "shard:size" → the checkpoint shard lines signed at that size
    this.walks = null;
    this.entries = 0;
    this.line = 0;
    notes.forEach((note) => this.checkpoint(note));
  }
  checkpoint(note) {
    if (this.walks) throw new Unusable(`line ${this.line}: a checkpoint after entries`);
    const { split, cp } = readCheckpoint(note);
    checkSignature(split, cp, this.keys);
    const first = this.checkpoints[0] ?? cp;
    if (cp.shards.length !== first.shards.length || cp.origin !== first.origin)
      fail("checkpoint", "the checkpoints are of different ledgers or shard counts");
    this.checkpoints.push(cp);
    for (const s of cp.shards) {
      const key = `${s.id}:${s.size}`;
      this.due.set(key, [...(this.due.get(key) ?? []), { cp, line: s }]);
    }
  }
  /** Compares a shard's journal so far with the checkpoints signed at its size. */
  meet(walk) {
    for (const { cp, line } of this.due.get(`${walk.id}:${walk.size}`) ?? []) {
      if (!eq(walk.root(), line.root) || !eq(walk.head, line.head))
        fail("root", `shard ${walk.id}: the first ${walk.size} entries are not what checkpoint ${cp.number} signed`);
    }
    this.due.delete(`${walk.id}:${walk.size}`);
  }
  /** Before the first entry: every shard empty, checked against checkpoints of size 0. */
  start() {
    if (this.walks) return;
    if (this.checkpoints.length === 0) throw new Unusable("no checkpoint: pass --checkpoint NOTE");
    this.walks = this.checkpoints[0].shards.map((s) => new ShardWalk(s.id));
    this.walks.forEach((w) => this.meet(w));
  }
  take(text) {
    this.line += 1;
    if (!text.trim()) return;
    let l;
    try {
      l = JSON.parse(text);
    } catch {
      throw new Unusable(`line ${this.line} is not JSON`);
    }
    if (typeof l?.checkpoint === "string") return this.checkpoint(l.checkpoint);
    this.start();
    const at = `line ${this.line}`;
    const walk = this.walks[l?.shard];
    const bytes = fromB64(l?.entry);
    if (!walk || !bytes || l.seq !== `${walk.size}`)
      fail("entry", `${at}: not entry ${walk?.size ?? "?"} of shard ${l?.shard} (a gap, a repeat or a reorder)`);
    let e;
    try {
      e = parseEntry(bytes);
    } catch (err) {
      if (err instanceof Invalid) err.message = `${at}: ${err.message}`;
      throw err;
    }
    if (e.shardId !== walk.id || e.seq !== walk.size) fail("entry", `${at}: the entry names another place`);
    if (!eq(e.prevHash, walk.head)) fail("chain", `${at}: prev_hash is not the entry hash before it`);
    if (walk.lastRecordedAtMs !== null && e.recordedAtMs < walk.lastRecordedAtMs)
      fail("chain", `${at}: recorded_at goes back in time`);
    walk.lastRecordedAtMs = e.recordedAtMs;
    walk.push(bytes);
    this.meet(walk);
    this.entries += 1;
  }
  finish() {
    this.start();
    for (const [key] of this.due) {
      const [shard, size] = key.split(":");
      fail("missing", `shard ${shard} ends before the size a checkpoint signed (${size})`);
    }
    return { entries: this.entries, shards: this.walks.length, checkpoints: this.checkpoints.length };
  }
}

/** Streams FILE (or standard input) through a [`JournalCheck`]. */
async function verifyJournal(path, notes, keys) {
  const check = new JournalCheck(notes, keys);
  const input = path === "-" ? process.stdin : createReadStream(path);
  input.on("error", () => {});
  try {
    for await (const line of createInterface({ input, crlfDelay: Infinity })) check.take(line);
  } catch (e) {
    if (e instanceof Invalid || e instanceof Unusable) throw e;
    throw new Unusable(`cannot read ${path}: ${e.message}`);
  }
  return check.finish();
}

// ---- The command line ----

function option(args, name) {
  const i = args.indexOf(name);
  return i < 0 ? null : args[i + 1];
}
function readText(path) {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (e) {
    throw new Unusable(`cannot read ${path}: ${e.message}`);
  }
}
function readJson(path) {
  try {
    return JSON.parse(readText(path));
  } catch (e) {
    if (e instanceof Unusable) throw e;
    throw new Unusable(`${path} is not JSON`);
  }
}

/** The verdict of one check: exit code and the JSON line printed. */
function verdict(check) {
  try {
    return [0, { valid: true, ...check() }];
  } catch (e) {
    if (e instanceof Invalid) return [1, { valid: false, step: e.step, detail: e.message }];
    if (e instanceof Unusable) return [2, { valid: false, step: null, detail: e.message }];
    throw e;
  }
}

/** [`verdict`] of a check that reads a stream. */
async function verdictAsync(check) {
  try {
    return [0, { valid: true, ...(await check()) }];
  } catch (e) {
    return verdict(() => {
      throw e;
    });
  }
}

function main(argv) {
  const [command, ...args] = argv;
  switch (command) {
    case "receipt":
      return verdict(() => verifyReceipt(readJson(args[0]), loadKeys(args)).summary);
    case "receipts": {
      const keys = loadKeys(args);
      for (const line of readText("-").split("\n").filter(Boolean)) {
        let receipt;
        try {
          receipt = JSON.parse(line);
        } catch {
          receipt = null;
        }
        console.log(JSON.stringify(verdict(() => verifyReceipt(receipt, keys).summary)[1]));
      }
      return null;
    }
    case "checkpoint":
      return verdict(() => {
        const keys = loadKeys(args);
        if (!keys) throw new Unusable("pin a key: --public-key or --trusted-keys");
        const { split, cp } = readCheckpoint(readText(args[0]));
        return { checkpoint: `${cp.number}`, signer: checkSignature(split, cp, keys) };
      });
    case "consistency":
      return verdict(() =>
        verifyConsistency(
          readText(option(args, "--old")),
          readText(option(args, "--new")),
          readJson(option(args, "--proof")),
          loadKeys(args),
        ),
      );
    case "export":
      return verdict(() => verifyExport(readText(args[0]), loadKeys(args)));
    case "journal":
      return verdictAsync(() => {
        const notes = args.flatMap((a, i) => (a === "--checkpoint" ? [readText(args[i + 1])] : []));
        return verifyJournal(args[0], notes, loadKeys(args));
      });
    default:
      return [2, { valid: false, step: null, detail: `unknown command ${command}` }];
  }
}

const result = await main(process.argv.slice(2));
if (result) {
  console.log(JSON.stringify(result[1]));
  process.exitCode = result[0];
}
