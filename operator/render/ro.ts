// The Region's RO endpoints, rendered: a container port and settings on the login server, char
// server and gateway, one Service each (<region>-ro-login, -ro-char, -ro-map) of the Region's
// RO service type, and ingress from any source on those ports. Each server is told the port
// clients reach the next one at: the node port with NodePort Services, the Service port
// otherwise, so 0x0069 and 0x0071 name ports that work from outside. Pure.
import type {
  V1ContainerPort,
  V1NetworkPolicyIngressRule,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Region } from "../api/index.ts";
import { RO_DEFAULT_PORTS } from "../api/ro.ts";
import { child, type Owner, selectorLabels, standardLabels } from "./common.ts";
import type { ComponentKey } from "./constants.ts";

/** Ports the workloads listen on for RO (apart from their HTTP or WebSocket port). */
export const RO_CONTAINER_PORTS = { login: 6901, char: 6122, map: 5122 } as const;
export const RO_ENV = {
  loginPort: "HYBRIDP2P_RO_LOGIN_PORT",
  charAddress: "HYBRIDP2P_RO_CHAR_ADDRESS",
  serverName: "HYBRIDP2P_RO_SERVER_NAME",
  charPort: "HYBRIDP2P_RO_CHAR_PORT",
  mapAddress: "HYBRIDP2P_RO_MAP_ADDRESS",
  mapPort: "HYBRIDP2P_RO_MAP_PORT",
} as const;

type Endpoint = keyof typeof RO_CONTAINER_PORTS;

/** Which component serves each RO endpoint. */
const SERVED_BY: Record<Endpoint, { key: ComponentKey; component: string }> = {
  login: { key: "loginServer", component: "login-server" },
  char: { key: "charServer", component: "char-server" },
  map: { key: "gateway", component: "gateway" },
};

export function roEnabled(region: Region): boolean {
  return region.spec.ro?.enabled === true;
}

/** The port a client is told for an endpoint: the node port behind NodePort, else the Service port. */
export function roAdvertisedPort(region: Region, e: Endpoint): number {
  const ro = region.spec.ro ?? {};
  const spec = ro[e] ?? {};
  if ((ro.serviceType ?? "NodePort") === "NodePort" && spec.nodePort !== undefined) return spec.nodePort;
  return spec.port ?? RO_DEFAULT_PORTS[e];
}

function endpointOf(key: ComponentKey): Endpoint | undefined {
  return (Object.keys(SERVED_BY) as Endpoint[]).find((e) => SERVED_BY[e].key === key);
}

/** What a component adds for RO: settings, a container port and an ingress rule (or nothing). */
export function roForComponent(
  region: Region,
  key: ComponentKey,
): { config: Record<string, string>; ports: V1ContainerPort[]; ingress: V1NetworkPolicyIngressRule[] } {
  const e = endpointOf(key);
  if (!e || !roEnabled(region)) return { config: {}, ports: [], ingress: [] };
  const host = region.spec.ro?.publicAddress ?? "127.0.0.1";
  const port = RO_CONTAINER_PORTS[e];
  const config: Record<string, string> =
    e === "login"
      ? {
          [RO_ENV.loginPort]: String(port),
          [RO_ENV.charAddress]: `${host}:${roAdvertisedPort(region, "char")}`,
          [RO_ENV.serverName]: region.metadata!.name!,
        }
      : e === "char"
        ? {
            [RO_ENV.charPort]: String(port),
            [RO_ENV.mapAddress]: `${host}:${roAdvertisedPort(region, "map")}`,
          }
        : { [RO_ENV.mapPort]: String(port) };
  return {
    config,
    ports: [{ name: `ro-${e}`, containerPort: port }],
    // RO clients connect from anywhere, like the component's own players.
    ingress: [{ ports: [{ port, protocol: "TCP" }] }],
  };
}

/** The three RO Services of the Region (none when RO is off). */
export function renderRoServices(region: Region, owner: Owner): KubeObject[] {
  if (!roEnabled(region)) return [];
  const r = region.metadata!.name!;
  const ro = region.spec.ro ?? {};
  const type = ro.serviceType ?? "NodePort";
  return (Object.keys(SERVED_BY) as Endpoint[]).map((e) => {
    const by = SERVED_BY[e];
    const sel = selectorLabels(by.component, r, by.component);
    const spec = ro[e] ?? {};
    return child("v1", "Service", `${r}-ro-${e}`, owner, standardLabels(sel, { region: r }), {
      spec: {
        type,
        selector: sel,
        ports: [
          {
            name: `ro-${e}`,
            port: spec.port ?? RO_DEFAULT_PORTS[e],
            targetPort: `ro-${e}`,
            protocol: "TCP",
            ...(spec.nodePort !== undefined && type !== "ClusterIP" ? { nodePort: spec.nodePort } : {}),
          },
        ],
      },
    });
  });
}

/** Where map servers find rAthena's map cache, when the Region names one. */
export const MAP_CACHE_DIR = "/etc/hybridp2p/maps";
export const MAP_CACHE_ENV = "HYBRIDP2P_MAP_CACHE";

export function mapCacheMount(region: Region): {
  env: Record<string, string>;
  volumes: V1Volume[];
  mounts: V1VolumeMount[];
} {
  const mc = region.spec.mapCache;
  if (!mc) return { env: {}, volumes: [], mounts: [] };
  if (mc.configMap) {
    const key = mc.configMap.key ?? "map_cache.dat";
    return {
      env: { [MAP_CACHE_ENV]: `${MAP_CACHE_DIR}/${key}` },
      volumes: [{ name: "map-cache", configMap: { name: mc.configMap.name, items: [{ key, path: key }] } }],
      mounts: [{ name: "map-cache", mountPath: MAP_CACHE_DIR, readOnly: true }],
    };
  }
  const pvc = mc.persistentVolumeClaim!;
  return {
    env: { [MAP_CACHE_ENV]: `${MAP_CACHE_DIR}/${pvc.path ?? "map_cache.dat"}` },
    volumes: [{ name: "map-cache", persistentVolumeClaim: { claimName: pvc.claimName, readOnly: true } }],
    mounts: [{ name: "map-cache", mountPath: MAP_CACHE_DIR, readOnly: true }],
  };
}
