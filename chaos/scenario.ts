// What a chaos scenario returns (chaos/main.ts prints it as a RESULT line).

export interface ScenarioResult {
  /** How many faults (or connections, or rounds) the scenario ran. */
  runs: number;
  /** One line per broken invariant. */
  violations: string[];
  /** Figures for the RESULT line, in order. */
  figures: Record<string, string | number>;
}

export type Scenario = (log: (msg: string) => void) => Promise<ScenarioResult>;
