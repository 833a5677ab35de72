/**
 * Debug configurations: a Python (debugpy) session that runs one function of a service under
 * `dormant.testing.TestClient` (python/dormant_debug_call.py, shipped in the extension), one that runs
 * the service's pytest tests, and the merge of them into a workspace's launch.json. No VS Code API.
 */

/** The launch.json variable that resolves to the shipped script's path (a command of this extension). */
export const DEBUG_SCRIPT_VARIABLE = "${command:dormant.debugScriptPath}";

export interface DebugConfiguration {
  name: string;
  type: string;
  request: string;
  [key: string]: unknown;
}

/** Runs `function` of the service in `dir` with `input` under TestClient, in the debugger. */
export function debugFunctionConfiguration(
  dir: string,
  functionName: string,
  input: string,
  program: string = DEBUG_SCRIPT_VARIABLE,
): DebugConfiguration {
  return {
    name: `Dormant: debug ${functionName} (${dir}, TestClient)`,
    type: "debugpy",
    request: "launch",
    program,
    args: [dir, functionName, input],
    cwd: "${workspaceFolder}",
    console: "integratedTerminal",
    justMyCode: true,
  };
}

/** Runs the service's tests (`pytest DIR`) in the debugger: breakpoints in handlers stop there. */
export function debugTestsConfiguration(dir: string): DebugConfiguration {
  return {
    name: `Dormant: debug ${dir} tests (pytest)`,
    type: "debugpy",
    request: "launch",
    module: "pytest",
    args: ["-q", dir],
    cwd: "${workspaceFolder}",
    console: "integratedTerminal",
    justMyCode: true,
  };
}

export interface LaunchFile {
  version: string;
  configurations: DebugConfiguration[];
  [key: string]: unknown;
}

/**
 * `existing` (a launch.json's parsed content, or undefined when there is none) with `added` put in:
 * a configuration of the same name is replaced, every other one kept, other keys kept.
 */
export function mergeLaunch(existing: unknown, added: DebugConfiguration[]): LaunchFile {
  const base =
    typeof existing === "object" && existing !== null && !Array.isArray(existing)
      ? (existing as Record<string, unknown>)
      : {};
  const current = Array.isArray(base.configurations) ? (base.configurations as DebugConfiguration[]) : [];
  const names = new Set(added.map((c) => c.name));
  return {
    ...base,
    version: typeof base.version === "string" ? base.version : "0.2.0",
    configurations: [...current.filter((c) => !names.has(c?.name)), ...added],
  };
}

/**
 * launch.json's text without comments and trailing commas (VS Code writes JSONC), for JSON.parse.
 * Strings are kept intact, including any `//` inside them.
 */
export function stripJsonc(text: string): string {
  return dropTrailingCommas(dropComments(text));
}

/** The index just past the string literal that starts at `start` (a double quote). */
function stringEnd(text: string, start: number): number {
  let j = start + 1;
  while (j < text.length && text[j] !== '"') {
    j += text[j] === "\\" ? 2 : 1;
  }
  return j + 1;
}

function dropComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function dropTrailingCommas(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end;
      continue;
    }
    if (c === ",") {
      let j = i + 1;
      while (j < text.length && /\s/.test(text[j])) j++;
      if (text[j] === "}" || text[j] === "]") {
        i++;
        continue;
      }
    }
    out += c;
    i++;
  }
  return out;
}
