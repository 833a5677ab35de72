/**
 * The `dormant` task type: a task definition (as written in tasks.json or provided for each service
 * of the workspace) turned into the command line it runs, and the tasks offered per service. No
 * VS Code API here: the extension wraps these in `vscode.Task`s with a `ProcessExecution`.
 */

import { checkCallInput, checkTarget, type ServiceInfo, sampleInput } from "./services";

export const TASK_TYPE = "dormant";
export const PROBLEM_MATCHER = "$dormant";

export const TASK_COMMANDS = ["generate", "publish", "deploy", "call", "logs"] as const;
export type TaskCommand = (typeof TASK_COMMANDS)[number];

/** What a `{"type": "dormant", ...}` task in tasks.json may hold (package.json's taskDefinitions). */
export interface DormantTaskDefinition {
  type: typeof TASK_TYPE;
  command: TaskCommand;
  /** generate, publish: the service directory (relative to the workspace folder). */
  dir?: string;
  /** deploy, logs: the service name. */
  service?: string;
  /** call: SERVICE.FUNCTION. */
  target?: string;
  /** call: the input, as a JSON value or a string of JSON. */
  input?: unknown;
  /** Extra arguments appended to the command line (e.g. ["--version", "2"]). */
  args?: string[];
}

export class TaskDefinitionError extends Error {}

export interface TaskPlan {
  /** The arguments after the `dormant` executable. */
  args: string[];
  /** Problem matchers to attach: generate and publish report `path:line:col: error:` diagnostics. */
  problemMatchers: string[];
  /** True for a task that does not end by itself (logs -f). */
  background: boolean;
  label: string;
}

function need(definition: DormantTaskDefinition, key: "dir" | "service" | "target"): string {
  const value = definition[key];
  if (typeof value !== "string" || value.trim() === "") {
    throw new TaskDefinitionError(`a "${definition.command}" task needs "${key}"`);
  }
  return value;
}

function extraArgs(definition: DormantTaskDefinition): string[] {
  const extra = definition.args ?? [];
  if (!Array.isArray(extra) || extra.some((a) => typeof a !== "string")) {
    throw new TaskDefinitionError('"args" must be a list of strings');
  }
  return extra;
}

/** The command line of a task definition; `TaskDefinitionError` says what is missing or wrong. */
export function planTask(definition: DormantTaskDefinition): TaskPlan {
  const extra = extraArgs(definition);
  switch (definition.command) {
    case "generate":
    case "publish": {
      const dir = need(definition, "dir");
      return {
        args: [definition.command, dir, ...extra],
        problemMatchers: [PROBLEM_MATCHER],
        background: false,
        label: `${definition.command} ${dir}`,
      };
    }
    case "deploy": {
      const service = need(definition, "service");
      return { args: ["deploy", service, ...extra], problemMatchers: [], background: false, label: `deploy ${service}` };
    }
    case "call": {
      const target = need(definition, "target");
      const bad = checkTarget(target);
      if (bad !== undefined) {
        throw new TaskDefinitionError(bad);
      }
      const raw = definition.input;
      const text = raw === undefined ? "{}" : typeof raw === "string" ? raw : JSON.stringify(raw);
      const input = checkCallInput(text);
      if (!input.ok) {
        throw new TaskDefinitionError(`the "input" of the call to ${target} is ${input.error}`);
      }
      return { args: ["call", target, input.text, ...extra], problemMatchers: [], background: false, label: `call ${target}` };
    }
    case "logs": {
      const service = need(definition, "service");
      return {
        args: ["logs", service, "--follow", ...extra],
        problemMatchers: [],
        background: true,
        label: `logs ${service}`,
      };
    }
    default:
      throw new TaskDefinitionError(
        `unknown command ${JSON.stringify((definition as { command: unknown }).command)}: use one of ${TASK_COMMANDS.join(", ")}`,
      );
  }
}

/** The tasks offered for the services of a workspace: generate and publish each; deploy, logs, call once generated. */
export function tasksForServices(services: ServiceInfo[]): DormantTaskDefinition[] {
  const tasks: DormantTaskDefinition[] = [];
  for (const s of services) {
    tasks.push({ type: TASK_TYPE, command: "generate", dir: s.dir });
    tasks.push({ type: TASK_TYPE, command: "publish", dir: s.dir });
    if (s.name === undefined) {
      continue;
    }
    tasks.push({ type: TASK_TYPE, command: "deploy", service: s.name });
    tasks.push({ type: TASK_TYPE, command: "logs", service: s.name });
    for (const f of s.functions) {
      tasks.push({ type: TASK_TYPE, command: "call", target: `${s.name}.${f.name}`, input: sampleInput(f.input) });
    }
  }
  return tasks;
}
