// Signing keys with rotation. A keyset is a JSON document (the `keyset.json` entry of a
// Kubernetes Secret the operator mounts) holding several JWKs, each with a `kid`, and naming the
// one `active` key that signs new tokens. Verification accepts a token signed by any key in the
// set, so rotating is: add the new key (inactive) → let the Secret reach every pod → make it
// active → after the longest token lifetime, remove the old one. Verifiers (the gateway) may
// mount a public-only copy: private parts (`d`) are needed only to sign.
//
//   { "active": "2026-11-a", "keys": [ { "kid": "2026-11-a", "kty": "OKP", "crv": "Ed25519", "x": "…", "d": "…" } ] }
import { createPrivateKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { Logger } from "../../platform/log.ts";

export type SigningAlg = "EdDSA" | "ES256";

export interface KeysetDocument {
  active: string;
  keys: JWK[];
}

type Key = CryptoKey;

export interface LoadedKey {
  kid: string;
  alg: SigningAlg;
  publicKey: Key;
  privateKey?: Key;
  /** The same private key for node:crypto, which signs synchronously (see tokens.ts). */
  signingKey?: KeyObject;
}

/** A parsed, immutable keyset. */
export class Keyset {
  readonly activeKid: string;
  readonly keys: ReadonlyMap<string, LoadedKey>;

  private constructor(activeKid: string, keys: Map<string, LoadedKey>) {
    this.activeKid = activeKid;
    this.keys = keys;
  }

  /** The key new tokens are signed with; throws when this keyset cannot sign. */
  get active(): LoadedKey & { privateKey: Key; signingKey: KeyObject } {
    const k = this.keys.get(this.activeKid);
    if (!k?.privateKey)
      throw new Error(`keyset: active key ${this.activeKid} has no private part, so it cannot sign`);
    return k as LoadedKey & { privateKey: Key; signingKey: KeyObject };
  }

  static async parse(text: string, opts: { requirePrivate?: boolean } = {}): Promise<Keyset> {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new Error("keyset: not valid JSON");
    }
    const d = doc as Partial<KeysetDocument>;
    if (
      !d ||
      typeof d !== "object" ||
      typeof d.active !== "string" ||
      !Array.isArray(d.keys) ||
      d.keys.length === 0
    ) {
      throw new Error('keyset: expected {"active": "<kid>", "keys": [<JWK>, …]} with at least one key');
    }
    const keys = new Map<string, LoadedKey>();
    for (const [i, jwk] of d.keys.entries()) {
      if (!jwk || typeof jwk.kid !== "string" || jwk.kid === "")
        throw new Error(`keyset: keys[${i}] has no kid`);
      if (keys.has(jwk.kid)) throw new Error(`keyset: kid ${jwk.kid} appears twice`);
      const alg = algOf(jwk);
      if (!alg) throw new Error(`keyset: key ${jwk.kid} must be an Ed25519 (OKP) or P-256 (EC) key`);
      const { d: priv, ...pub } = jwk;
      try {
        const publicKey = (await importJWK({ ...pub, alg }, alg)) as Key;
        const privateKey = priv ? ((await importJWK({ ...jwk, alg }, alg)) as Key) : undefined;
        const signingKey = priv ? createPrivateKey({ key: jwk as JsonWebKey, format: "jwk" }) : undefined;
        keys.set(jwk.kid, { kid: jwk.kid, alg, publicKey, privateKey, signingKey });
      } catch (err) {
        throw new Error(`keyset: key ${jwk.kid} could not be imported: ${(err as Error).message}`);
      }
    }
    const active = keys.get(d.active);
    if (!active) throw new Error(`keyset: the active kid ${d.active} is not among the keys`);
    if (opts.requirePrivate && !active.privateKey) {
      throw new Error(`keyset: the active key ${d.active} has no private part (d), so it cannot sign`);
    }
    return new Keyset(d.active, keys);
  }
}

function algOf(jwk: JWK): SigningAlg | undefined {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "EdDSA";
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
  return undefined;
}

/** A fresh private JWK (with kid) for a keyset. */
export async function generateKey(kid: string, alg: SigningAlg = "EdDSA"): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, {
    crv: alg === "EdDSA" ? "Ed25519" : undefined,
    extractable: true,
  });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid, alg, use: "sig" };
}

export async function newKeysetDocument(kid: string, alg: SigningAlg = "EdDSA"): Promise<KeysetDocument> {
  return { active: kid, keys: [await generateKey(kid, alg)] };
}

/** Adds a key; `activate` makes it the signing key at once (do that only after it has propagated). */
export async function addKey(
  doc: KeysetDocument,
  kid: string,
  opts: { activate?: boolean; alg?: SigningAlg } = {},
): Promise<KeysetDocument> {
  if (doc.keys.some((k) => k.kid === kid)) throw new Error(`keyset: kid ${kid} already exists`);
  const key = await generateKey(kid, opts.alg);
  return { active: opts.activate ? kid : doc.active, keys: [...doc.keys, key] };
}

export function activateKey(doc: KeysetDocument, kid: string): KeysetDocument {
  if (!doc.keys.some((k) => k.kid === kid)) throw new Error(`keyset: no key ${kid}`);
  return { ...doc, active: kid };
}

export function removeKey(doc: KeysetDocument, kid: string): KeysetDocument {
  if (doc.active === kid) throw new Error(`keyset: ${kid} is the active key; activate another first`);
  return { active: doc.active, keys: doc.keys.filter((k) => k.kid !== kid) };
}

/** The public-only copy for verifiers. */
export function publicKeyset(doc: KeysetDocument): KeysetDocument {
  return { active: doc.active, keys: doc.keys.map(({ d: _d, ...pub }) => pub) };
}

/** Where tokens get their keys: the current keyset, and a way to look again for an unknown kid. */
export interface KeySource {
  current(): Keyset;
  /** Re-read the source now (rate-limited); resolves when done. */
  refresh?(): Promise<void>;
}

export function staticKeys(keyset: Keyset): KeySource & { set(k: Keyset): void } {
  let k = keyset;
  return {
    current: () => k,
    set(next) {
      k = next;
    },
  };
}

/**
 * A keyset read from a file (the mounted Secret) and re-read when it changes: Kubernetes
 * updates a mounted Secret by swapping a symlink, so the file is polled (content compared),
 * and re-read at once (at most every `minRefreshMs`) when a token names an unknown kid. A bad
 * new file is logged and the last good keyset kept.
 */
export class FileKeySource implements KeySource {
  private keyset: Keyset;
  private lastText: string;
  private timer: NodeJS.Timeout | undefined;
  private lastRefresh = 0;
  private readonly path: string;
  private readonly opts: { requirePrivate: boolean; minRefreshMs: number; log?: Logger };

  private constructor(path: string, keyset: Keyset, text: string, opts: FileKeySource["opts"]) {
    this.path = path;
    this.keyset = keyset;
    this.lastText = text;
    this.opts = opts;
  }

  static async open(
    path: string,
    opts: { requirePrivate?: boolean; pollMs?: number; minRefreshMs?: number; log?: Logger } = {},
  ): Promise<FileKeySource> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new Error(
        `keyset: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    const requirePrivate = opts.requirePrivate ?? false;
    const ks = await Keyset.parse(text, { requirePrivate });
    const src = new FileKeySource(path, ks, text, {
      requirePrivate,
      minRefreshMs: opts.minRefreshMs ?? 2000,
      log: opts.log,
    });
    if ((opts.pollMs ?? 10_000) > 0) {
      src.timer = setInterval(() => void src.reload(), opts.pollMs ?? 10_000);
      src.timer.unref();
    }
    opts.log?.info("keyset loaded", { path, activeKid: ks.activeKid, kids: [...ks.keys.keys()] });
    return src;
  }

  current(): Keyset {
    return this.keyset;
  }

  async refresh(): Promise<void> {
    if (Date.now() - this.lastRefresh < this.opts.minRefreshMs) return;
    await this.reload();
  }

  /** Re-reads the file now; returns true when the keyset changed. */
  async reload(): Promise<boolean> {
    this.lastRefresh = Date.now();
    try {
      await stat(this.path);
      const text = await readFile(this.path, "utf8");
      if (text === this.lastText) return false;
      const ks = await Keyset.parse(text, { requirePrivate: this.opts.requirePrivate });
      this.keyset = ks;
      this.lastText = text;
      this.opts.log?.info("keyset reloaded", {
        path: this.path,
        activeKid: ks.activeKid,
        kids: [...ks.keys.keys()],
      });
      return true;
    } catch (err) {
      this.opts.log?.error("keyset reload failed; keeping the last good keyset", { path: this.path, err });
      return false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
