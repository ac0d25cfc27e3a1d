// Least-privilege roles on the stores, derived from the flag store's key layout
// (platform/flags/layout.ts) and the NATS subjects (platform/bus/contract.ts, world.ts,
// workloads' coordinator subjects). Pure definitions plus two edges: applyEtcdAuth (etcd's auth
// API) and renderNatsConfig (a nats-server configuration). The operator renders managed stores
// with these; the integration services (testkit/local/services.ts) start with them.
//
// etcd (one per Region, keys under the Region's flag prefix):
//   operator            readwrite <prefix>flags/ and the publisher fence <prefix>ownership/publisher
//   map-server@<region> read <prefix>flags/, readwrite <prefix>ownership/maps/<region>/ (its leases)
//   other workloads     read <prefix>flags/ only (reports travel on NATS, not etcd)
// With client-certificate auth, etcd takes the user from the certificate's CN: a workload's
// certificate CN is etcdUserName(role, region).
//
// NATS (one per Region): a user per role and Region, with publish/subscribe permissions on the
// subjects that role speaks (a gateway cannot publish what a map server publishes; only the
// operator asks pods to report again; workloads only publish reports).
import { type Etcd3, Range } from "etcd3";
import { DEFAULT_PREFIX, layout } from "../flags/layout.ts";

export const WORKLOAD_ROLES = [
  "gateway",
  "map-server",
  "coordinator",
  "login-server",
  "char-server",
  "orchestrator",
] as const;
export type WorkloadRole = (typeof WORKLOAD_ROLES)[number];
export type StoreRole = "operator" | WorkloadRole;

/** The etcd root user: only it manages users and roles once auth is on. */
export const ETCD_ROOT_USER = "root";

const TOKEN = /^[A-Za-z0-9_-]+$/;
function regionToken(region: string): string {
  if (!TOKEN.test(region)) throw new Error(`invalid region for a store role: ${JSON.stringify(region)}`);
  return region;
}

// ---- etcd ------------------------------------------------------------------------------------

export interface EtcdGrant {
  permission: "Read" | "Write" | "Readwrite";
  /** A key prefix (range [prefix, prefix+1)). */
  prefix?: string;
  /** One key. */
  key?: string;
}

export interface EtcdRoleDef {
  /** Role and user name (the client certificate's CN). */
  name: string;
  grants: EtcdGrant[];
}

/** The etcd user (and client-certificate CN) of a role: `operator`, or `<role>@<region>`. */
export function etcdUserName(role: StoreRole, region?: string): string {
  if (role === "operator") return "hybridp2p-operator";
  if (region === undefined) throw new Error(`the etcd user of ${role} needs its region`);
  return `hybridp2p-${role}@${regionToken(region)}`;
}

/** Every role of one Region's flag store (prefix: the Region's flag prefix). */
export function etcdRoles(regions: string[], prefix: string = DEFAULT_PREFIX): EtcdRoleDef[] {
  const l = layout(prefix);
  const readFlags: EtcdGrant = { permission: "Read", prefix: `${l.prefix}flags/` };
  const roles: EtcdRoleDef[] = [
    {
      name: etcdUserName("operator"),
      grants: [
        { permission: "Readwrite", prefix: `${l.prefix}flags/` },
        { permission: "Readwrite", key: l.fence },
      ],
    },
  ];
  for (const region of regions) {
    for (const role of WORKLOAD_ROLES) {
      const grants: EtcdGrant[] = [readFlags];
      if (role === "map-server")
        grants.push({
          permission: "Readwrite",
          prefix: `${l.ownershipPrefix}maps/${regionToken(region)}/`,
        });
      roles.push({ name: etcdUserName(role, region), grants });
    }
  }
  return roles;
}

/**
 * Creates the root user, the roles, a user per role (same name; with `passwords`, that user can
 * also log in by password, else only by client certificate) and enables auth. Idempotent: roles
 * and users that exist are kept and their grants topped up. Run it with a client that may still
 * manage users: before auth is on, any client; after, one logged in as root.
 */
export async function applyEtcdAuth(
  client: Etcd3,
  opts: {
    roles: EtcdRoleDef[];
    /** The root user's password (etcd requires one to enable auth unless it has no password set). */
    rootPassword: string;
    /** Passwords per user name, for users that log in by password (optional). */
    passwords?: Record<string, string>;
  },
): Promise<void> {
  const exists = (err: unknown) => err instanceof Error && /already exists/i.test(err.message);
  const users = new Set((await client.getUsers()).map((u) => u.name));
  const roles = new Set((await client.getRoles()).map((r) => r.name));
  if (!roles.has("root")) await client.role("root").create();
  if (!users.has(ETCD_ROOT_USER)) await client.user(ETCD_ROOT_USER).create(opts.rootPassword);
  await client.user(ETCD_ROOT_USER).addRole("root");
  for (const def of opts.roles) {
    if (!roles.has(def.name))
      await client
        .role(def.name)
        .create()
        .catch((e) => {
          if (!exists(e)) throw e;
        });
    for (const g of def.grants) {
      await client
        .role(def.name)
        .grant(
          g.prefix !== undefined
            ? { permission: g.permission, range: Range.prefix(g.prefix) }
            : { permission: g.permission, key: g.key! },
        );
    }
    if (!users.has(def.name)) {
      // A user with no password logs in only with a client certificate whose CN is its name.
      const password = opts.passwords?.[def.name];
      await client.auth
        .userAdd(
          password === undefined
            ? { name: def.name, options: { no_password: true } }
            : { name: def.name, password },
        )
        .catch((e) => {
          if (!exists(e)) throw e;
        });
    }
    await client.user(def.name).addRole(def.name);
  }
  await client.auth.authEnable();
}

// ---- NATS ------------------------------------------------------------------------------------

export interface NatsPermissions {
  publish: string[];
  subscribe: string[];
}

/** The NATS user name of a role: `operator`, or `<role>@<region>`. */
export function natsUserName(role: StoreRole, region?: string): string {
  return etcdUserName(role, region);
}

/** The subjects a role publishes and subscribes to in one Region (replies are allowed separately). */
export function natsPermissions(
  role: StoreRole,
  region: string,
  prefix: string = DEFAULT_PREFIX,
): NatsPermissions {
  const r = regionToken(region);
  const l = layout(prefix);
  const reportsRoot = l.reportsWildcard.slice(0, -"reports.*".length); // hybridp2p.flags.<token>.
  // Every workload reports its flags and listens for "report again".
  const flags: NatsPermissions = {
    publish: [`${reportsRoot}reports.*`],
    subscribe: [`${reportsRoot}sync.*`],
  };
  // JetStream API and acks (the event and world streams), and replies to own requests.
  const js = ["$JS.API.>", "$JS.ACK.>"];
  const inbox = "_INBOX.>";
  const map = `hp2p.${r}.*.*`;
  const coord = `hp2pcoord.${r}`;
  const world = `hp2pworld.${r}`;
  switch (role) {
    case "operator":
      return { publish: [`${reportsRoot}sync.*`], subscribe: [`${reportsRoot}reports.*`, inbox] };
    case "gateway":
      return {
        publish: [...flags.publish, ...js, `${map}.join`, `${map}.leave`, `${map}.in`, `${map}.resync`],
        // The coordinators ask the gateways where a session plays (locate) and announce themselves (alive).
        subscribe: [
          ...flags.subscribe,
          inbox,
          `${map}.aoi.*`,
          `${map}.ev`,
          `${map}.owner`,
          `${coord}.alive`,
          `${coord}.locate`,
        ],
      };
    case "map-server":
      return {
        publish: [...flags.publish, ...js, `${map}.aoi.*`, `${map}.ev`, `${map}.owner`, `${world}.live.>`],
        subscribe: [
          ...flags.subscribe,
          inbox,
          `${map}.join`,
          `${map}.leave`,
          `${map}.in`,
          `${map}.resync`,
          `${map}.owner`,
          `${world}.ev.*`,
        ],
      };
    case "coordinator":
      return {
        publish: [...flags.publish, `${coord}.>`],
        subscribe: [...flags.subscribe, inbox, `${coord}.>`],
      };
    case "orchestrator":
      return {
        publish: [...flags.publish, ...js, `${world}.ev.*`],
        subscribe: [...flags.subscribe, inbox, `${world}.live.>`],
      };
    case "login-server":
    case "char-server":
      return { publish: flags.publish, subscribe: [...flags.subscribe, inbox] };
  }
}

export interface NatsUser {
  user: string;
  password: string;
  /** Omitted: every subject (an administrator). */
  permissions?: NatsPermissions;
}

export interface NatsConfigOptions {
  users: NatsUser[];
  /** Server TLS; with verify, clients must also present a certificate signed by caFile. */
  tls?: { certFile: string; keyFile: string; caFile: string; verify?: boolean };
  host?: string;
  port?: number;
  /** Monitoring port (healthz). */
  httpPort?: number;
  /** JetStream's store directory; omitted: no JetStream. */
  jetstreamDir?: string;
}

const q = (s: string): string => JSON.stringify(s);
const list = (xs: string[]): string => `[${xs.map(q).join(", ")}]`;

/** A nats-server configuration file: listen address, JetStream, TLS and users with permissions. */
export function renderNatsConfig(o: NatsConfigOptions): string {
  if (o.users.length === 0) throw new Error("a NATS configuration needs at least one user");
  const lines: string[] = [];
  if (o.host !== undefined) lines.push(`host: ${q(o.host)}`);
  if (o.port !== undefined) lines.push(`port: ${o.port}`);
  if (o.httpPort !== undefined) lines.push(`http_port: ${o.httpPort}`);
  if (o.jetstreamDir !== undefined) lines.push(`jetstream { store_dir: ${q(o.jetstreamDir)} }`);
  if (o.tls) {
    lines.push(
      "tls {",
      `  cert_file: ${q(o.tls.certFile)}`,
      `  key_file: ${q(o.tls.keyFile)}`,
      `  ca_file: ${q(o.tls.caFile)}`,
      `  verify: ${o.tls.verify ? "true" : "false"}`,
      "  timeout: 5",
      "}",
    );
  }
  lines.push("authorization {", "  users: [");
  for (const u of o.users) {
    const perms = u.permissions
      ? `, permissions: { publish: { allow: ${list(u.permissions.publish)} }, subscribe: { allow: ${list(u.permissions.subscribe)} }, allow_responses: true }`
      : "";
    lines.push(`    { user: ${q(u.user)}, password: ${q(u.password)}${perms} }`);
  }
  lines.push("  ]", "}");
  return `${lines.join("\n")}\n`;
}
