// The local region, in the foreground: `node hack/local/cli.ts up` starts the control plane
// and data services, installs the CRDs, applies the examples, prints how to reach them and
// keeps running until Ctrl-C, when it stops everything it started.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { binDir, envVars, startLocalEnv } from "./services.ts";

const repoRoot = new URL("../..", import.meta.url).pathname;
const localDir = join(repoRoot, ".cache/local");

function kubectl(kubeconfig: string, args: string[]): string {
  return execFileSync(join(binDir(), "kubectl"), ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" });
}

async function up(opts: { exit: boolean }): Promise<void> {
  const log = (m: string) => console.log(`[local] ${m}`);
  rmSync(localDir, { recursive: true, force: true });
  mkdirSync(join(repoRoot, ".cache"), { recursive: true });
  const running = await startLocalEnv({ log });
  const shutdown = async () => {
    log("stopping...");
    await running.stop();
    rmSync(running.env.stateDir, { recursive: true, force: true });
    rmSync(localDir, { force: true });
    log("stopped; nothing left running");
  };
  try {
    // A stable path to the throwaway state, so other terminals can find it.
    symlinkSync(running.env.stateDir, localDir);
    const kc = running.env.kubeconfig!;
    log("installing CRDs");
    kubectl(kc, ["apply", "--server-side", "-f", join(repoRoot, "crds")]);
    kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "-f", join(repoRoot, "crds")]);
    log("applying the example region");
    process.stdout.write(kubectl(kc, ["apply", "--server-side", "-f", join(repoRoot, "examples")]));
    process.stdout.write(kubectl(kc, ["get", "hybridp2p", "-A"]));
    const vars = envVars(running.env);
    writeFileSync(
      join(localDir, "env.sh"),
      Object.entries(vars)
        .map(([k, v]) => `export ${k}=${v}\n`)
        .join(""),
    );
    console.log(`
The local region is up. In another terminal:
  source ${join(localDir, "env.sh")}
  ${join(binDir(), "kubectl")} get hybridp2p -A
${Object.entries(vars)
  .map(([k, v]) => `  ${k}=${v}`)
  .join("\n")}
Press Ctrl-C to stop everything.`);
  } catch (err) {
    await shutdown();
    throw err;
  }
  if (opts.exit) return shutdown();
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await shutdown();
}

const program = new Command("local").description("the local control plane, data services and example region");
program
  .command("up")
  .description("start everything, apply the examples, and run until Ctrl-C")
  .option("--exit", "stop again as soon as everything is ready (a smoke check)", false)
  .action((opts: { exit: boolean }) => up(opts));
await program.parseAsync();
