// The operator's small PKI: a CA per Region, serving certificates for its Services and client
// certificates for store users (etcd takes the user name from the certificate's CN), plus random
// passwords. ECDSA P-256 throughout: every store and client here (etcd, nats-server, PostgreSQL,
// Redis/Dragonfly, Node's TLS) takes it, and keys are made in milliseconds on two cores.
// No I/O: the caller stores the PEM text in Secrets.
import "reflect-metadata"; // @peculiar/x509's dependency injection needs the polyfill first
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
// Node's WebCrypto, typed as the library's provider (this project compiles without the DOM lib).
type Provider = NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
type Keys = webcrypto.CryptoKeyPair;
const provider = webcrypto as unknown as Provider;
const DAY_MS = 86_400_000;
/** Generated material is kept, never rotated by the operator (delete a Secret to make it anew):
 * long lives, so a dev Region does not break a year in. Production brings its own (cert-manager). */
export const CA_VALIDITY_DAYS = 3650;
export const LEAF_VALIDITY_DAYS = 3650;

/** A certificate and its private key, PEM (key in PKCS#8). */
export interface KeyPair {
  cert: string;
  key: string;
}

export type Usage = "server" | "client" | "server+client";

async function newKeys(): Promise<Keys> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as Keys;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** CN values become X.500 name text: keep them to a safe alphabet rather than escape. */
function cn(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$/.test(name)) throw new Error(`invalid common name "${name}"`);
  return `CN=${name}`;
}

// Backdated a little: a node whose clock is behind the operator's must not see "not yet valid".
const notBefore = (now: number) => new Date(now - 5 * 60_000);

/** A self-signed CA that may sign leaves only (path length 0). */
export async function newCa(commonName: string, now = Date.now()): Promise<KeyPair> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: cn(commonName),
      keys,
      signingAlgorithm: ALG,
      notBefore: notBefore(now),
      notAfter: new Date(now + CA_VALIDITY_DAYS * DAY_MS),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
      ],
    },
    provider,
  );
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

export interface LeafRequest {
  commonName: string;
  usage: Usage;
  /** DNS names and IP addresses (serving certificates). */
  hosts?: string[];
  now?: number;
}

/** A leaf certificate signed by `ca`. */
export async function issue(ca: KeyPair, req: LeafRequest): Promise<KeyPair> {
  const now = req.now ?? Date.now();
  const caCert = new x509.X509Certificate(ca.cert);
  const caKey = await webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(ca.key), ALG, false, [
    "sign",
  ]);
  const keys = await newKeys();
  const eku: string[] = [];
  if (req.usage !== "client") eku.push(x509.ExtendedKeyUsage.serverAuth);
  if (req.usage !== "server") eku.push(x509.ExtendedKeyUsage.clientAuth);
  const hosts = req.hosts ?? [];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(eku, false),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false, provider),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
  ];
  if (hosts.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        hosts.map((h) => ({ type: isIP(h) ? ("ip" as const) : ("dns" as const), value: h })),
        false,
      ),
    );
  }
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: cn(req.commonName),
      issuer: caCert.subject,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: ALG,
      notBefore: notBefore(now),
      notAfter: new Date(now + LEAF_VALIDITY_DAYS * DAY_MS),
      extensions,
    },
    provider,
  );
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** A random password: 32 bytes, base64url (no characters that need quoting in a URL or a config file). */
export function randomPassword(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}
