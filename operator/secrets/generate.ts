// Fills a planned Secret (operator/render/secrets.ts) with fresh material: keys, certificates
// signed by the Region's CA, random passwords. No I/O; the caller stores the result once.
import type { SecretPlan } from "../render/secrets.ts";
import { issue, type KeyPair, newCa, randomPassword } from "./pki.ts";

/** The CA as kept in the <region>-ca Secret. */
export function caFromData(data: Record<string, string>): KeyPair {
  const cert = data["ca.crt"];
  const key = data["ca.key"];
  if (!cert || !key) throw new Error("the CA Secret lacks ca.crt or ca.key");
  return { cert, key };
}

/** The contents of a planned Secret. Certificates need the Region's CA. */
export async function generateData(plan: SecretPlan, ca?: KeyPair): Promise<Record<string, string>> {
  switch (plan.kind) {
    case "ca": {
      const made = await newCa(plan.commonName);
      return { "ca.crt": made.cert, "ca.key": made.key };
    }
    case "cert": {
      if (!ca) throw new Error(`${plan.name}: no CA to sign with`);
      const leaf = await issue(ca, { commonName: plan.commonName, usage: plan.usage, hosts: plan.hosts });
      return { "tls.crt": leaf.cert, "tls.key": leaf.key, "ca.crt": ca.cert };
    }
    case "passwords":
      return { ...plan.fixed, ...Object.fromEntries(plan.random.map((k) => [k, randomPassword()])) };
  }
}
