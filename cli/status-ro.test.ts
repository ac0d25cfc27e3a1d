// `hybridctl status` says where an RO client's login server setting points.
import { describe, expect, it } from "vitest";
import type { Region } from "../operator/api/region.ts";
import { roLoginAddress } from "./commands/status.ts";

const region = (spec: Region["spec"]): Region =>
  ({ metadata: { name: "demo", namespace: "demo" }, spec }) as Region;

describe("hybridctl status: RO", () => {
  it("prints the login node port behind NodePort, the Service port otherwise, nothing when off", () => {
    expect(
      roLoginAddress(
        region({
          ro: {
            enabled: true,
            serviceType: "NodePort",
            publicAddress: "192.0.2.7",
            login: { port: 6900, nodePort: 30690 },
          },
        }),
      ),
    ).toBe("192.0.2.7:30690");
    expect(roLoginAddress(region({ ro: { enabled: true, serviceType: "LoadBalancer" } }))).toBe(
      "127.0.0.1:6900",
    );
    expect(roLoginAddress(region({}))).toBeNull();
  });
});
