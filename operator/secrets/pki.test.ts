// The PKI's certificates as TLS sees them: Node's own X.509 parser and a real TLS handshake
// with client-certificate verification, both ways refused when the CA does not match.
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect, createServer } from "node:tls";
import { describe, expect, it } from "vitest";
import { issue, newCa, randomPassword } from "./pki.ts";

describe("pki", () => {
  it("makes a CA that signs serving and client certificates with the names asked for", async () => {
    const ca = await newCa("r1 CA");
    const caCert = new X509Certificate(ca.cert);
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe("CN=r1 CA");

    const srv = await issue(ca, {
      commonName: "r1-gateway",
      usage: "server",
      hosts: ["r1-gateway.ns.svc", "127.0.0.1"],
    });
    const s = new X509Certificate(srv.cert);
    expect(s.ca).toBe(false);
    expect(s.verify(caCert.publicKey)).toBe(true);
    expect(s.checkHost("r1-gateway.ns.svc")).toBe("r1-gateway.ns.svc");
    expect(s.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(s.checkHost("other.ns.svc")).toBeUndefined();
    expect(s.keyUsage).toContain("1.3.6.1.5.5.7.3.1");
    expect(s.keyUsage).not.toContain("1.3.6.1.5.5.7.3.2");
    expect(srv.key).toMatch(/^-----BEGIN PRIVATE KEY-----/);

    const client = await issue(ca, { commonName: "gateway", usage: "client" });
    const c = new X509Certificate(client.cert);
    expect(c.subject).toBe("CN=gateway");
    expect(c.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(c.verify(caCert.publicKey)).toBe(true);
    expect(c.verify(new X509Certificate((await newCa("other")).cert).publicKey)).toBe(false);
  });

  it("refuses a common name it would have to escape", async () => {
    const ca = await newCa("r1 CA");
    await expect(issue(ca, { commonName: "a,CN=root", usage: "client" })).rejects.toThrow(
      /invalid common name/,
    );
  });

  it("passes a mutual TLS handshake, and fails one against a CA it does not know", async () => {
    const ca = await newCa("r1 CA");
    const srv = await issue(ca, { commonName: "store", usage: "server", hosts: ["localhost"] });
    const client = await issue(ca, { commonName: "operator", usage: "client" });
    const server = createServer(
      { cert: srv.cert, key: srv.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true },
      (sock) => sock.end(`hello ${(sock.getPeerCertificate().subject as { CN: string }).CN}`),
    );
    server.on("tlsClientError", () => undefined);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as AddressInfo).port;
    const dial = (opts: { ca: string; cert?: string; key?: string }) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect({ host: "127.0.0.1", port, servername: "localhost", ...opts });
        let got = "";
        sock.on("data", (d) => {
          got += d;
        });
        sock.on("end", () => resolve(got));
        sock.on("error", reject);
      });
    try {
      expect(await dial({ ca: ca.cert, cert: client.cert, key: client.key })).toBe("hello operator");
      // A server certificate from another CA is refused by the client...
      await expect(
        dial({ ca: (await newCa("other")).cert, cert: client.cert, key: client.key }),
      ).rejects.toThrow();
      // ...and a client certificate from another CA by the server (under TLS 1.3 the client may
      // see its alert as an error or as a closed connection: either way no greeting).
      const stranger = await issue(await newCa("other"), { commonName: "operator", usage: "client" });
      expect(await dial({ ca: ca.cert, cert: stranger.cert, key: stranger.key }).catch(() => "")).toBe("");
      expect(await dial({ ca: ca.cert }).catch(() => "")).toBe("");
    } finally {
      server.close();
    }
  });

  it("makes long random passwords that need no quoting", () => {
    const a = randomPassword();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomPassword()).not.toBe(a);
  });
});
