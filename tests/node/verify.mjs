// An independent verifier of Assent receipts, checkpoints and consistency proofs, written
// from docs/receipts.md and docs/design.md §2–§3 alone (no Assent code was read for it), with
// the noble implementations of blake3, SHA-256 and ed25519. It exists to show that the
// documents are enough for a third party: tests/verify.rs runs it over tests/vectors and over
// receipts fresh from a real server, and compares its verdicts with `assent verify`'s.
//
//   node verify.mjs receipt FILE [--public-key FILE | --trusted-keys FILE]
//   node verify.mjs receipts [--public-key FILE | --trusted-keys FILE] < JSON lines
//   node verify.mjs checkpoint FILE (--public-key FILE | --trusted-keys FILE)
//   node verify.mjs consistency --old NOTE --new NOTE --proof FILE [--public-key F | --trusted-keys F]
//
// Prints one JSON verdict a line ({"valid": true} or {"valid": false, "step": …, "detail": …})
// and exits 0 when valid, 1 when invalid, 2 on unusable input (`receipts` always exits 0).
import { readFileSync } from "node:fs";
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

/** MTH over leaf hashes: split at the largest power of two smaller than n. */
function treeHash(leaves) {
  if (leaves.length === 0) return blake3(new Uint8Array());
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(treeHash(leaves.slice(0, k)), treeHash(leaves.slice(k)));
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

/** Parses an entry strictly (design.md §2); the fields a receipt's steps need. */
function parseEntry(bytes) {
  const r = new Reader(bytes, "entry");
  if (r.u8() !== 1) fail("entry", "unknown format version");
  const kind = r.u8();
  if (kind !== 1 && kind !== 2) fail("entry", `unknown kind ${kind}`);
  const e = { kind, shardId: r.u32(), seq: r.u64(), recordedAtMs: r.i64() };
  r.take(32); // prev_hash: checked by a chain walk, not by a receipt
  e.customerId = r.str().text;
  if (kind === 1) {
    e.commitment = r.take(32);
    r.str();
    r.str();
    const method = r.u8();
    if (method < 1 || method > 8) fail("entry", `capture method ${method}`);
    r.str();
    r.bool();
    r.i64();
    r.opt(() => r.i64());
    r.opt(() => r.str());
    let last = null;
    for (let n = r.u32(); n > 0; n--) {
      const name = r.str().bytes;
      if (last && byteOrder(last, name) >= 0) fail("entry", "purposes not strictly increasing");
      last = name;
      const choice = r.u8();
      if (choice !== 1 && choice !== 2) fail("entry", `choice ${choice}`);
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

/** The subject id of a personal record (format v1), checking its whole layout. */
function parsePersonal(bytes) {
  const r = new Reader(bytes, "format");
  if (r.u8() !== 1) fail("format", "unknown personal record version");
  const subject = r.str().text;
  for (let i = 0; i < 5; i++) r.opt(() => r.str());
  r.end();
  return subject;
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
    root: treeHash(leaves),
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
  const wantId = `ev${e.shardId.toString(16).padStart(8, "0")}${e.seq.toString(16).padStart(16, "0")}`;
  if (r.eventId !== wantId) fail("entry", `eventId is not ${wantId}`);
  // 2. The personal record opens the commitment.
  let subject = null;
  if (r.personal !== null) {
    const p = r.personal;
    shape(p && typeof p === "object" && Object.keys(p).length === 2, "bad personal object");
    const salt = fromB64(p.salt);
    const record = fromB64(p.record);
    shape(salt?.length === 32 && record, "bad personal salt or record");
    shape(e.kind === 1, "an erasure entry has no personal record");
    if (!eq(blake3(cat(salt, record)), e.commitment)) fail("personal-commitment", "blake3(salt ‖ record) differs");
    subject = parsePersonal(record);
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
  return { eventId: r.eventId, customer: e.customerId, subject, checkpoint: `${cp.number}`, signer };
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

function main(argv) {
  const [command, ...args] = argv;
  switch (command) {
    case "receipt":
      return verdict(() => verifyReceipt(readJson(args[0]), loadKeys(args)));
    case "receipts": {
      const keys = loadKeys(args);
      for (const line of readText("-").split("\n").filter(Boolean)) {
        let receipt;
        try {
          receipt = JSON.parse(line);
        } catch {
          receipt = null;
        }
        console.log(JSON.stringify(verdict(() => verifyReceipt(receipt, keys))[1]));
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
    default:
      return [2, { valid: false, step: null, detail: `unknown command ${command}` }];
  }
}

const result = main(process.argv.slice(2));
if (result) {
  console.log(JSON.stringify(result[1]));
  process.exitCode = result[0];
}
