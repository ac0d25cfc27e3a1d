// Throwaway certificate authorities for tests, made with the openssl CLI (the operator's own CA
// code stays out of workloads' tests): a CA and a serving certificate for localhost and
// 127.0.0.1, laid out as a mounted kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), so a
// workload serves it through HYBRIDP2P_SERVING_TLS_DIR exactly as in a pod.
//
// `testServingTls()` is what the testkit's helpers serve by default, so the suite runs with TLS
// on. It also makes this test process trust the test CA, as a player's machine with the
// Region's CA file: the default trust of every TLS client here (ws, fetch, https) gets the CA,
// and HYBRIDP2P_CA_FILE names it for the child processes (hybridctl, bots) a test starts.
// Vitest runs each test file in its own process, so a file that proves refusals (tls.int.test.ts)
// makes its own CA with `makeTestCa()` and trusts nothing.
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getCACertificates, setDefaultCACertificates } from "node:tls";
import type { ServingTls } from "../platform/tls.ts";

export interface TestCa {
  /** The CA certificate file (what a client's --ca-file names). */
  caFile: string;
  caPem: string;
  /** tls.crt, tls.key and ca.crt: a serving certificate for localhost and 127.0.0.1. */
  servingDir: string;
  /** base64 SHA-256 of the serving certificate's public key (Chromium's SPKI allow list). */
  spki: string;
  /** Another serving pair from the same CA, in a new directory (rotation tests). */
  issue(label: string): string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A fresh CA and a serving certificate signed by it, in a temp dir. Trusts nothing. */
export function makeTestCa(label = "test"): TestCa {
  const dir = mkdtempSync(join(tmpdir(), `hybridp2p-ca-${label}-`));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "7",
      "-subj",
      `/CN=hybrid-p2p ${label} CA`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  writeFileSync(
    join(dir, "serving.ext"),
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
  let n = 0;
  const issue = (name: string): string => {
    const out = mkdtempSync(join(dir, `${name}-`));
    openssl(
      ["req", ...ec, "-keyout", join(out, "tls.key"), "-out", "tls.csr", "-subj", "/CN=localhost"],
      dir,
    );
    openssl(
      [
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        String(Date.now() * 100 + n++),
        "-days",
        "7",
        "-extfile",
        "serving.ext",
        "-out",
        join(out, "tls.crt"),
      ],
      dir,
    );
    writeFileSync(join(out, "ca.crt"), readFileSync(join(dir, "ca.crt")));
    return out;
  };
  const servingDir = issue("serving");
  const caFile = join(dir, "ca.crt");
  return {
    caFile,
    caPem: readFileSync(caFile, "utf8"),
    servingDir,
    spki: spkiHash(readFileSync(join(servingDir, "tls.crt"), "utf8")),
    issue,
  };
}

/** base64 SHA-256 of a certificate's SubjectPublicKeyInfo. */
export function spkiHash(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

let shared: TestCa | undefined;

/** The test process's CA, trusted here and by child processes (HYBRIDP2P_CA_FILE). */
export function testCa(): TestCa {
  if (shared) return shared;
  shared = makeTestCa("suite");
  setDefaultCACertificates([...getCACertificates("default"), shared.caPem]);
  process.env.HYBRIDP2P_CA_FILE = shared.caFile;
  return shared;
}

/** What the testkit's helpers serve: the suite's serving certificate (see testCa). */
export function testServingTls(): ServingTls {
  return { dir: testCa().servingDir };
}
