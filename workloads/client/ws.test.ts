// Where the SDK's TLS trust comes from: the given PEM, the given file, HYBRIDP2P_CA_FILE, or
// nothing (the system's trust); and the error that names what to fix.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CA_FILE_ENV, explainTlsError, nodeTlsOptions } from "./ws.ts";

const dir = mkdtempSync(join(tmpdir(), "hybridp2p-ws-test-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const saved = process.env[CA_FILE_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[CA_FILE_ENV];
  else process.env[CA_FILE_ENV] = saved;
});

describe("nodeTlsOptions", () => {
  it("uses the system's trust when given nothing and HYBRIDP2P_CA_FILE is unset", () => {
    delete process.env[CA_FILE_ENV];
    expect(nodeTlsOptions()).toEqual({});
  });

  it("takes the PEM first, then the file, then HYBRIDP2P_CA_FILE", () => {
    process.env[CA_FILE_ENV] = file("env.crt", "ENV");
    const given = file("given.crt", "FILE");
    expect(String(nodeTlsOptions({ ca: "PEM", caFile: given }).ca)).toBe("PEM");
    expect(String(nodeTlsOptions({ caFile: given }).ca)).toBe("FILE");
    expect(String(nodeTlsOptions({}).ca)).toBe("ENV");
    expect(nodeTlsOptions({ serverName: "gw.example" })).toMatchObject({ servername: "gw.example" });
  });

  it("names the flag or the variable whose file cannot be read", () => {
    expect(() => nodeTlsOptions({ caFile: join(dir, "none.crt") })).toThrow(
      /the CA file .*none\.crt cannot be read: ENOENT/,
    );
    process.env[CA_FILE_ENV] = join(dir, "gone.crt");
    expect(() => nodeTlsOptions()).toThrow(/HYBRIDP2P_CA_FILE .*gone\.crt cannot be read: ENOENT/);
  });
});

describe("explainTlsError", () => {
  it("explains an untrusted certificate and keeps its code; leaves other errors alone", () => {
    const cert = Object.assign(new Error("self-signed certificate in certificate chain"), {
      code: "SELF_SIGNED_CERT_IN_CHAIN",
    });
    const e = explainTlsError("wss://gw:7000", cert) as Error & { code: string };
    expect(e.code).toBe("SELF_SIGNED_CERT_IN_CHAIN");
    expect(e.message).toMatch(/^wss:\/\/gw:7000: the server's certificate is not trusted .*--ca-file/);
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(explainTlsError("wss://gw:7000", refused)).toBe(refused);
  });
});
