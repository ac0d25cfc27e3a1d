// `node hack/node-agent/main.ts --kubeconfig FILE --state-dir DIR`: runs the node agent until
// SIGTERM, then stops every pod it started.
import { hostname } from "node:os";
import { Command } from "commander";
import { NodeAgent } from "./agent.ts";

const program = new Command("node-agent")
  .description("registers a Node and runs the pods bound to it with podman (or as local processes)")
  .requiredOption("--kubeconfig <file>", "kubeconfig of the cluster")
  .requiredOption("--state-dir <dir>", "where pod logs and runtime settings go")
  .option("--node-name <name>", "the Node's name", hostname().toLowerCase())
  .option("--runtime <runtime>", "podman, process, or auto (podman where installed)", "auto")
  .action(
    async (o: {
      kubeconfig: string;
      stateDir: string;
      nodeName: string;
      runtime: "podman" | "process" | "auto";
    }) => {
      const agent = new NodeAgent({ ...o, repoRoot: new URL("../..", import.meta.url).pathname });
      await agent.start();
      const stop = async () => {
        await agent.stop();
        process.exit(0);
      };
      process.once("SIGTERM", () => void stop());
      process.once("SIGINT", () => void stop());
    },
  );
await program.parseAsync();
