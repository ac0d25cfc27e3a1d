// How a process reaches each store: the address, credentials and TLS material the operator
// renders into pods (operator/render/stores.ts storeWiring), read from the environment, and
// their translation into each client's options. Every connection to etcd, NATS, PostgreSQL and
// Redis/Dragonfly goes through here, so a store with auth and TLS works everywhere or nowhere.
//
// Environment contract (STORE is ETCD, NATS, POSTGRES or DRAGONFLY):
//   HYBRIDP2P_ETCD_ENDPOINTS / HYBRIDP2P_NATS_URL / HYBRIDP2P_DATABASE_URL / HYBRIDP2P_REDIS_URL
//   HYBRIDP2P_<STORE>_USERNAME   optional (etcd: password login; with a client certificate etcd
//                                takes the user from its CN)
//   HYBRIDP2P_<STORE>_PASSWORD   optional
//   HYBRIDP2P_<STORE>_TLS_DIR    optional: a directory in the kubernetes.io/tls Secret layout plus
//                                ca.crt: ca.crt (trust), tls.crt + tls.key (client certificate,
//                                optional except for etcd client-certificate auth)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type ConnectionOptions, connect, type NatsConnection } from "@nats-io/transport-node";
import type { IOptions } from "etcd3";
import type { RedisOptions } from "ioredis";
import type { PoolConfig } from "pg";

export type StoreKind = "etcd" | "nats" | "postgres" | "dragonfly";
export const STORE_KINDS: StoreKind[] = ["etcd", "nats", "postgres", "dragonfly"];

export interface StoreAccess {
  store: StoreKind;
  /** etcd endpoints / NATS servers (comma-separated), or one PostgreSQL / Redis URL. */
  url: string;
  username?: string;
  password?: string;
  /** ca.crt, and optionally tls.crt + tls.key (a client certificate). */
  tlsDir?: string;
}

/** The environment variable of each store's address. */
export const STORE_URL_ENV: Record<StoreKind, string> = {
  etcd: "HYBRIDP2P_ETCD_ENDPOINTS",
  nats: "HYBRIDP2P_NATS_URL",
  postgres: "HYBRIDP2P_DATABASE_URL",
  dragonfly: "HYBRIDP2P_REDIS_URL",
};

/** `HYBRIDP2P_<STORE>_` */
export const storeEnvPrefix = (store: StoreKind): string => `HYBRIDP2P_${store.toUpperCase()}_`;

/**
 * A store's access from the environment: the address (`url`, else the store's URL variable) with
 * the credentials and TLS directory of HYBRIDP2P_<STORE>_*. Undefined when there is no address.
 */
export function storeAccess(
  store: StoreKind,
  url?: string,
  env: NodeJS.ProcessEnv = process.env,
): StoreAccess | undefined {
  const u = url || env[STORE_URL_ENV[store]];
  if (!u) return undefined;
  const p = storeEnvPrefix(store);
  const access: StoreAccess = { store, url: u };
  if (env[`${p}USERNAME`]) access.username = env[`${p}USERNAME`];
  if (env[`${p}PASSWORD`]) access.password = env[`${p}PASSWORD`];
  if (env[`${p}TLS_DIR`]) access.tlsDir = env[`${p}TLS_DIR`];
  return access;
}

/** Like storeAccess, but a missing address is an error naming the variable. */
export function requireStoreAccess(store: StoreKind, url?: string, env?: NodeJS.ProcessEnv): StoreAccess {
  const a = storeAccess(store, url, env);
  if (!a) throw new Error(`${store} is not configured: set ${STORE_URL_ENV[store]}`);
  return a;
}

/** The environment variables that carry an access (the inverse of storeAccess). */
export function storeAccessEnv(a: StoreAccess): Record<string, string> {
  const p = storeEnvPrefix(a.store);
  const out: Record<string, string> = { [STORE_URL_ENV[a.store]]: a.url };
  if (a.username) out[`${p}USERNAME`] = a.username;
  if (a.password) out[`${p}PASSWORD`] = a.password;
  if (a.tlsDir) out[`${p}TLS_DIR`] = a.tlsDir;
  return out;
}

/** The same store reached at another address (e.g. another Region's, or through a proxy). */
export const withUrl = (a: StoreAccess, url: string): StoreAccess => ({ ...a, url });

export interface TlsFiles {
  caFile: string;
  certFile?: string;
  keyFile?: string;
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function readMaterial(a: StoreAccess, file: string): Buffer {
  const path = join(a.tlsDir!, file);
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(
      `cannot read the ${a.store} TLS file ${path} (from ${storeEnvPrefix(a.store)}TLS_DIR): ${(err as Error).message}`,
    );
  }
}

/** The TLS material of an access; undefined without a TLS directory. The client certificate is
 * optional but comes as a pair. */
export function tlsFiles(a: StoreAccess): TlsFiles | undefined {
  if (!a.tlsDir) return undefined;
  const caFile = join(a.tlsDir, "ca.crt");
  const ca = readMaterial(a, "ca.crt");
  let hasCert = false;
  try {
    readFileSync(join(a.tlsDir, "tls.crt"));
    hasCert = true;
  } catch {}
  if (!hasCert) return { caFile, ca };
  return {
    caFile,
    ca,
    certFile: join(a.tlsDir, "tls.crt"),
    keyFile: join(a.tlsDir, "tls.key"),
    cert: readMaterial(a, "tls.crt"),
    key: readMaterial(a, "tls.key"),
  };
}

function expect(a: StoreAccess, store: StoreKind): void {
  if (a.store !== store) throw new Error(`a ${a.store} access given where ${store} was expected`);
}

// ---- etcd ------------------------------------------------------------------------------------

/** etcd3's hosts, TLS credentials (CA and client certificate) and password login. */
export function etcdOptions(a: StoreAccess): Pick<IOptions, "hosts" | "credentials" | "auth"> {
  expect(a, "etcd");
  const hosts = a.url
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const tls = tlsFiles(a);
  const opts: Pick<IOptions, "hosts" | "credentials" | "auth"> = {
    // With TLS material every endpoint is dialled over TLS (etcd3 takes the credentials over the scheme).
    hosts,
  };
  if (tls) opts.credentials = { rootCertificate: tls.ca, privateKey: tls.key, certChain: tls.cert };
  if (a.username && a.password) opts.auth = { username: a.username, password: a.password };
  return opts;
}

// ---- NATS ------------------------------------------------------------------------------------

/** @nats-io/transport-node's servers, user/password and TLS (CA and optional client certificate). */
export function natsOptions(a: StoreAccess): ConnectionOptions {
  expect(a, "nats");
  const opts: ConnectionOptions = {
    servers: a.url
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  };
  if (a.username) opts.user = a.username;
  if (a.password) opts.pass = a.password;
  const tls = tlsFiles(a);
  if (tls)
    opts.tls = tls.certFile
      ? { caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile }
      : { caFile: tls.caFile };
  return opts;
}

/** Connects to NATS with the access's credentials and TLS; `opts` adds client options (name,
 * reconnects, ...). */
export function connectNats(
  a: StoreAccess,
  opts: Omit<ConnectionOptions, "servers" | "user" | "pass" | "tls"> = {},
): Promise<NatsConnection> {
  return connect({ ...opts, ...natsOptions(a) });
}

// ---- PostgreSQL ------------------------------------------------------------------------------

/** pg's connection string, password and TLS. With a TLS directory the server is verified against
 * its ca.crt (sslmode in the URL would override it in pg, so it is dropped). The password never
 * appears in errors: pg does not print its connection string. */
export function pgOptions(a: StoreAccess): PoolConfig {
  expect(a, "postgres");
  const tls = tlsFiles(a);
  let u: URL;
  try {
    u = new URL(a.url);
  } catch {
    throw new Error(`invalid PostgreSQL URL in ${STORE_URL_ENV.postgres}: ${a.url}`);
  }
  // In the URL, not beside it: pg lets the parsed connection string override the other fields.
  if (a.username) u.username = encodeURIComponent(a.username);
  if (a.password) u.password = encodeURIComponent(a.password);
  if (tls) for (const k of ["sslmode", "ssl", "sslrootcert", "sslcert", "sslkey"]) u.searchParams.delete(k);
  const opts: PoolConfig = { connectionString: u.toString() };
  if (tls) opts.ssl = { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true };
  return opts;
}

// ---- Redis / Dragonfly -----------------------------------------------------------------------

/** ioredis's host, port, database, password (and ACL username) and TLS. */
export function redisOptions(a: StoreAccess): RedisOptions {
  expect(a, "dragonfly");
  let u: URL;
  try {
    u = new URL(a.url);
  } catch {
    throw new Error(`invalid Redis URL in ${STORE_URL_ENV.dragonfly}: ${a.url}`);
  }
  const opts: RedisOptions = {
    host: u.hostname,
    port: u.port ? Number(u.port) : 6379,
  };
  const db = u.pathname.replace(/^\//, "");
  if (db) opts.db = Number(db);
  const username = a.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
  const password = a.password ?? (u.password ? decodeURIComponent(u.password) : undefined);
  if (username) opts.username = username;
  if (password) opts.password = password;
  const tls = tlsFiles(a);
  if (tls) opts.tls = { ca: tls.ca, cert: tls.cert, key: tls.key };
  else if (u.protocol === "rediss:") opts.tls = {};
  return opts;
}
