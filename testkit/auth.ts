// Helpers for tests and the benchmark: a fresh PostgreSQL database per test file, a keyset file
// in a temp dir, configurations with fast hashing and free ports, and a tiny JSON client.
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { Fields, Logger } from "../platform/log.ts";
import { createLogger } from "../platform/log.ts";
import { pgOptions, requireStoreAccess } from "../platform/stores/access.ts";
import { GatewayAuth } from "../workloads/auth/gateway.ts";
import { Keyset, type KeysetDocument, newKeysetDocument, staticKeys } from "../workloads/auth/keyset.ts";
import type { SessionStore } from "../workloads/auth/sessions.ts";
import { signCharacterToken } from "../workloads/auth/tokens.ts";
import type { CharConfig } from "../workloads/char-server/config.ts";
import type { LoginConfig } from "../workloads/login-server/config.ts";
import type { RuntimeConfig } from "../workloads/runtime/config.ts";
import { testServingTls } from "./tls.ts";

/** Creates a database named after `label` plus a random suffix; returns its URL. */
export async function freshDatabase(baseUrl: string, label: string): Promise<string> {
  const name = `${label.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  // The test administrator's credentials and TLS from the environment (vitest-store-env.ts).
  const admin = new pg.Client(pgOptions(requireStoreAccess("postgres", baseUrl)));
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export function uniquePrefix(label: string): string {
  return `t:${label}:${randomBytes(4).toString("hex")}:`;
}

export async function keysetFile(
  kid = "k1",
): Promise<{ path: string; doc: KeysetDocument; write(d: KeysetDocument): void }> {
  const dir = mkdtempSync(join(tmpdir(), "hybridp2p-keys-"));
  const path = join(dir, "keyset.json");
  const doc = await newKeysetDocument(kid);
  const write = (d: KeysetDocument) => writeFileSync(path, JSON.stringify(d));
  write(doc);
  return { path, doc, write };
}

/** Serves https from the suite's test CA (testkit/tls.ts), as a Region does by default. */
export function testRuntime(podName = "test"): RuntimeConfig {
  return {
    servingTlsDir: testServingTls().dir,
    podName,
    namespace: "test",
    region: "test",
    healthPort: 0,
    metricsPort: 0,
    logLevel: "debug",
    shutdownTimeoutMs: 2000,
    drainDelayMs: 0,
  };
}

export function testLoginConfig(o: {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  keysetFile: string;
}): LoginConfig {
  const lockoutMs = 15 * 60_000;
  return {
    runtime: testRuntime("login-test"),
    ...o,
    keysetPollMs: 0,
    port: 0,
    host: "127.0.0.1",
    trustedProxyHops: 1,
    maxBodyBytes: 4096,
    sessionTtlMs: 15 * 60_000,
    lockout: {
      account: { maxFailures: 5, windowMs: lockoutMs, lockoutMs },
      address: { maxFailures: 20, windowMs: lockoutMs, lockoutMs },
    },
    // Cheap hashing keeps tests quick; the benchmark uses the real cost.
    scrypt: { logN: 10, r: 8, p: 1 },
    hashConcurrency: 4,
    hashQueue: 256,
    signupLimit: { perAddress: 0, windowMs: 3_600_000 },
  };
}

export function testCharConfig(o: {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  keysetFile: string;
}): CharConfig {
  return {
    runtime: testRuntime("char-test"),
    ...o,
    keysetPollMs: 0,
    port: 0,
    host: "127.0.0.1",
    trustedProxyHops: 0,
    maxBodyBytes: 4096,
    gatewayAddress: "gateway.test.svc:7000",
    characterTokenTtlMs: 60_000,
    maxCharacters: 9,
    startPoint: { map: "prontera", x: 156, y: 191 },
  };
}

/** A logger that keeps every line, to assert what was (and was not) logged. */
export function capturingLogger(component: string): { log: Logger; lines: string[]; records(): Fields[] } {
  const lines: string[] = [];
  return {
    log: createLogger(component, { level: "debug", sink: (l) => lines.push(l) }),
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Fields),
  };
}

export interface JsonResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON answers
  body: any;
  headers: Headers;
}

export async function call(
  base: string,
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; headers?: Record<string, string>; raw?: string } = {},
): Promise<JsonResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined || opts.raw !== undefined) headers["content-type"] ??= "application/json";
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, body, headers: res.headers };
}

/**
 * A fresh keyset, the gateway-side auth that checks login sessions in `sessions`, and a signer of
 * character tokens on `map` bound to a given session (account `acc-<character>`): for tests of
 * what happens when a session ends.
 */
export async function sessionBoundTokens(sessions: SessionStore, map: string) {
  const keyset = await newKeysetDocument("k1");
  const keys = staticKeys(await Keyset.parse(JSON.stringify(keyset)));
  const token = async (characterId: string, sessionId: string) =>
    (
      await signCharacterToken(
        keys,
        { accountId: `acc-${characterId}`, characterId, characterName: `n${characterId}`, map, sessionId },
        60_000,
      )
    ).token;
  return { keyset, auth: new GatewayAuth({ keys, sessions }), token };
}
