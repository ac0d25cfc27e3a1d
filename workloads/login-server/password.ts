// Password hashing with scrypt (memory-hard), run on libuv's thread pool so the event loop
// stays free. Hashes are self-describing, `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`, so the cost can
// be raised later: a login with an older cost succeeds and is re-hashed with the current one.
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

export interface ScryptParams {
  /** log2 of N, the CPU/memory cost. */
  logN: number;
  /** Block size. Memory per hash is 128 · N · r bytes. */
  r: number;
  /** Parallelisation (sequential work inside one hash here). */
  p: number;
}

/**
 * N = 2^15, r = 8, p = 3: 32 MiB per hash, and the work of OWASP's minimum for scrypt (N = 2^17,
 * r = 8, p = 1, or an equal-cost trade of memory for passes: 2^16/p=2, 2^15/p=3, ...). Of those
 * equivalents, 2^15/p=3 needs the least memory per hash in flight (Node runs the p passes one
 * after another over the same 32 MiB), so a pod hashing 4 at once (see config.ts) holds 128 MiB
 * for it instead of 512 MiB at N = 2^17, while each guess still costs an attacker
 * 32 MiB of fast memory (the part GPUs and ASICs lack). Raise logN/p through the environment
 * when pods get more; stored hashes carry their own parameters and are upgraded on the next
 * successful login.
 */
export const DEFAULT_SCRYPT: ScryptParams = { logN: 15, r: 8, p: 3 };

const KEY_LEN = 32;
const SALT_LEN = 16;

function memoryFor(p: ScryptParams): number {
  // Node checks 128·N·r (plus a little) against maxmem; leave generous headroom.
  return 256 * 2 ** p.logN * p.r + 16 * 1024 * 1024;
}

function derive(password: string, salt: Buffer, p: ScryptParams, keyLen = KEY_LEN): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFC"),
      salt,
      keyLen,
      { N: 2 ** p.logN, r: p.r, p: p.p, maxmem: memoryFor(p) },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await derive(password, salt, params);
  return `$scrypt$ln=${params.logN},r=${params.r},p=${params.p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

export function parseHash(stored: string): { params: ScryptParams; salt: Buffer; key: Buffer } | undefined {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/.exec(
    stored,
  );
  if (!m) return undefined;
  const params = { logN: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (params.logN < 1 || params.logN > 22 || params.r < 1 || params.p < 1) return undefined;
  return { params, salt: Buffer.from(m[4]!, "base64url"), key: Buffer.from(m[5]!, "base64url") };
}

export interface VerifyResult {
  ok: boolean;
  /** The stored hash used other parameters than the current ones: store a fresh hash. */
  needsRehash: boolean;
}

export async function verifyPassword(
  password: string,
  stored: string,
  current: ScryptParams = DEFAULT_SCRYPT,
): Promise<VerifyResult> {
  const parsed = parseHash(stored);
  if (!parsed) return { ok: false, needsRehash: false };
  const key = await derive(password, parsed.salt, parsed.params, parsed.key.length);
  const ok = key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
  const p = parsed.params;
  return { ok, needsRehash: ok && (p.logN !== current.logN || p.r !== current.r || p.p !== current.p) };
}

/** Burns one hash of the current cost, so a login for an unknown account takes as long as one for a known one. */
export async function dummyVerify(password: string, current: ScryptParams = DEFAULT_SCRYPT): Promise<void> {
  await derive(password, Buffer.alloc(SALT_LEN), current);
}

/**
 * Bounds concurrent hashes: at most `concurrency` at once (the libuv pool's size is the useful
 * maximum), up to `queue` waiting; beyond that callers are refused (the server answers 503)
 * rather than piling up memory and latency.
 */
export class HashLimiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly concurrency: number;
  private readonly queue: number;

  constructor(concurrency: number, queue: number) {
    this.concurrency = concurrency;
    this.queue = queue;
  }

  get pending(): number {
    return this.active + this.waiting.length;
  }

  /** Runs fn under the limit, or returns undefined at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.active >= this.concurrency) {
      if (this.waiting.length >= this.queue) return undefined;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      return { value: await fn() };
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
