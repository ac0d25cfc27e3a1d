// A Region's managed etcd on this host, for tests against a control plane without pods: started
// from the Secrets the operator generated (the server certificate and the Region's CA, mounted
// as the pod would mount them) with the flags the operator renders (https, client-certificate auth).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeSecret } from "../operator/controllers/secrets.ts";
import { type KubeClient, resources } from "../platform/kube/kube.ts";
import { binDir } from "./local/node.ts";
import { type Proc, startProcess } from "./processes.ts";

/** Writes a Secret's keys as files into `dir/<name>` (as a Secret volume) and returns that directory. */
export async function mountSecret(
  client: KubeClient,
  ns: string,
  name: string,
  dir: string,
): Promise<string> {
  const s = await client.get(resources.secret, ns, name);
  if (!s) throw new Error(`Secret ${ns}/${name} not found`);
  const out = join(dir, name);
  mkdirSync(out, { recursive: true });
  for (const [k, v] of Object.entries(decodeSecret(s))) writeFileSync(join(out, k), v, { mode: 0o600 });
  return out;
}

/** Starts the Region's etcd on 127.0.0.1:`port` (its certificate names 127.0.0.1). */
export async function startRegionEtcd(o: {
  client: KubeClient;
  namespace: string;
  region: string;
  port: number;
  peerPort: number;
  dir: string;
}): Promise<Proc> {
  const server = await mountSecret(o.client, o.namespace, `${o.region}-etcd-server-tls`, o.dir);
  const url = `https://127.0.0.1:${o.port}`;
  const peer = `http://127.0.0.1:${o.peerPort}`;
  return startProcess(
    `${o.region}-etcd`,
    join(binDir(), "etcd"),
    [
      "--name=e0",
      `--data-dir=${join(o.dir, `${o.region}-etcd-data`)}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=e0=${peer}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
      "--client-cert-auth",
      `--trusted-ca-file=${join(server, "ca.crt")}`,
      `--cert-file=${join(server, "tls.crt")}`,
      `--key-file=${join(server, "tls.key")}`,
    ],
    join(o.dir, `${o.region}-etcd.log`),
  );
}
