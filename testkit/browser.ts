// A real browser for tests: Debian's chromium (hack/ensure-deps.sh installs it), driven headless
// by playwright-core (no browser download). WebRTC on loopback needs chromium to offer loopback
// candidates and plain IP addresses instead of mDNS names (shared notes on WebRTC).
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { testCa } from "./tls.ts";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

export function chromiumPath(): string | undefined {
  return process.env.HYBRIDP2P_CHROMIUM ?? CANDIDATES.find((p) => existsSync(p));
}

/**
 * Chromium trusting the suite's serving certificate (testkit/tls.ts): its public key is on
 * `--ignore-certificate-errors-spki-list`, which accepts exactly that key whoever signed it, and
 * nothing else (a player's browser would trust the Region's CA instead; installing a CA needs an
 * NSS database per profile, which this flag avoids).
 */
export async function launchChromium(opts: { trustSpki?: string[] } = {}): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath)
    throw new Error(
      "no chromium found: run hack/ensure-deps.sh (apt-get install chromium) or set HYBRIDP2P_CHROMIUM",
    );
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--allow-loopback-in-peer-connection",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
      "--disable-dev-shm-usage",
      `--ignore-certificate-errors-spki-list=${(opts.trustSpki ?? [testCa().spki]).join(",")}`,
    ],
  });
}

/** Where tests keep what a person should be able to look at afterwards (screenshots). */
export function testResultsDir(): string {
  const dir = join(new URL("..", import.meta.url).pathname, ".cache/test-results");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** On the browser client's page: signs a new account up, creates a character and plays it. */
export async function signUpAndPlay(page: Page): Promise<void> {
  await page.fill("#username", `web${randomBytes(3).toString("hex")}`);
  await page.fill("#password", "correct horse battery");
  await page.click("#signup");
  await page.waitForSelector("#chars:not([hidden])");
  await page.fill("#char-name", `Hero${randomBytes(2).toString("hex")}`);
  await page.click("#create");
  await page.click("#char-list .pick");
  await page.waitForSelector("#game:not([hidden])");
}
