// The Region's RO endpoints (the Ragnarok Online protocol at PACKETVER 20101124, for legacy RO
// clients) and the rAthena map cache its map servers may load. Off by default: the RO login
// packet carries the password in plain text (the protocol's own weakness), so a Region turns the
// endpoints on knowingly.
import { type Static, Type } from "@sinclair/typebox";
import { NodePort, ServicePort, ServiceTypeValues } from "./common.ts";
import { cel, DefaultedObject, DnsSubdomain, StringEnum } from "./schema.ts";

/** rAthena's ports, the numbers RO clients are configured with. */
export const RO_DEFAULT_PORTS = { login: 6900, char: 6121, map: 5121 } as const;

function RoEndpoint(what: string, defaultPort: number) {
  return DefaultedObject(
    {
      port: Type.Optional(ServicePort(defaultPort)),
      nodePort: Type.Optional(
        NodePort(
          "Fixed node port (required with serviceType NodePort: it is the port the server tells clients).",
        ),
      ),
    },
    { description: `The RO ${what} endpoint's Service port.` },
  );
}

export const RoSpec = DefaultedObject(
  {
    enabled: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "Run the RO login, char and map endpoints. Off by default: RO's login packet carries the password in plain text.",
      }),
    ),
    serviceType: Type.Optional(
      StringEnum(ServiceTypeValues, {
        default: "NodePort",
        description: "Type of the three RO Services (<region>-ro-login, -ro-char, -ro-map).",
      }),
    ),
    publicAddress: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 253,
        pattern: "^[A-Za-z0-9.-]+$",
        description:
          "Host (IPv4 address or DNS name) clients reach the RO Services at, put in the server list (0x0069) and the map address (0x0071). Default 127.0.0.1.",
      }),
    ),
    login: Type.Optional(RoEndpoint("login", RO_DEFAULT_PORTS.login)),
    char: Type.Optional(RoEndpoint("char", RO_DEFAULT_PORTS.char)),
    map: Type.Optional(RoEndpoint("map (the gateway)", RO_DEFAULT_PORTS.map)),
  },
  {
    description:
      "RO protocol endpoints for legacy Ragnarok Online clients (PACKETVER 20101124): login on the login server, char on the char server, map on the gateway.",
    ...cel(
      {
        rule: "!self.enabled || self.serviceType != 'NodePort' || (has(self.login.nodePort) && has(self.char.nodePort) && has(self.map.nodePort))",
        message:
          "login, char and map need a nodePort when serviceType is NodePort (the servers tell clients these ports)",
        fieldPath: ".serviceType",
        reason: "FieldValueRequired",
      },
      {
        rule: "self.serviceType != 'ClusterIP' || (!has(self.login.nodePort) && !has(self.char.nodePort) && !has(self.map.nodePort))",
        message: "nodePort requires serviceType NodePort or LoadBalancer",
        fieldPath: ".serviceType",
      },
    ),
  },
);
export type RoSpec = Static<typeof RoSpec>;

export const MapCacheSpec = Type.Object(
  {
    configMap: Type.Optional(
      Type.Object(
        {
          name: DnsSubdomain({ description: "ConfigMap in the Region's namespace." }),
          key: Type.Optional(
            Type.String({
              default: "map_cache.dat",
              minLength: 1,
              maxLength: 253,
              pattern: "^[-._a-zA-Z0-9]+$",
              description: "Key holding the file (binaryData).",
            }),
          ),
        },
        { description: "A ConfigMap holding the file (at most 1 MiB: a few maps)." },
      ),
    ),
    persistentVolumeClaim: Type.Optional(
      Type.Object(
        {
          claimName: DnsSubdomain({ description: "PersistentVolumeClaim in the Region's namespace." }),
          path: Type.Optional(
            Type.String({
              default: "map_cache.dat",
              minLength: 1,
              maxLength: 253,
              pattern: "^[-._a-zA-Z0-9/]+$",
              description: "Path of the file in the volume.",
            }),
          ),
        },
        { description: "A volume holding the file (a whole world's maps)." },
      ),
    ),
  },
  {
    description:
      "rAthena's map cache (db/map_cache.dat) for the map servers: real map cells instead of generated maps.",
    ...cel({
      rule: "has(self.configMap) != has(self.persistentVolumeClaim)",
      message: "exactly one of configMap and persistentVolumeClaim",
      reason: "FieldValueInvalid",
    }),
  },
);
export type MapCacheSpec = Static<typeof MapCacheSpec>;
