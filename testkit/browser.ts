// A real browser for tests: Debian's chromium (hack/ensure-deps.sh installs it), driven headless
// by playwright-core (no browser download). WebRTC on loopback needs chromium to offer loopback
// candidates and plain IP addresses instead of mDNS names (shared notes on WebRTC).
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

export function chromiumPath(): string | undefined {
  return process.env.HYBRIDP2P_CHROMIUM ?? CANDIDATES.find((p) => existsSync(p));
}

export async function launchChromium(): Promise<Browser> {
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
    ],
  });
}

/** Where tests keep what a person should be able to look at afterwards (screenshots). */
export function testResultsDir(): string {
  const dir = join(new URL("..", import.meta.url).pathname, ".cache/test-results");
  mkdirSync(dir, { recursive: true });
  return dir;
}
