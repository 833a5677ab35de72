/**
 * The VS Code side of the Dormant extension: wires the pure modules (tasks, diagnostics, services,
 * meshState, launch) to the editor. Everything that can be decided without VS Code is decided there
 * and unit-tested; this file only reads files, runs `dormant`, and shows the results.
 */

import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as path from "node:path";
import * as vscode from "vscode";

import { COMMANDS, resolveDormantPath } from "./commands";
import { debugFunctionConfiguration, debugTestsConfiguration, mergeLaunch, stripJsonc } from "./launch";
import { describeMesh, parseMeshRecord, type MeshRead, type Probe } from "./meshState";
import { checkCallInput, discoverServices, sampleInput, type ServiceInfo } from "./services";
import { TASK_TYPE, TaskDefinitionError, planTask, tasksForServices, type DormantTaskDefinition } from "./tasks";

interface FolderServices {
  folder: vscode.WorkspaceFolder;
  services: ServiceInfo[];
}

interface FunctionPick extends vscode.QuickPickItem {
  folder: vscode.WorkspaceFolder;
  service: ServiceInfo;
  fn: string;
  input: unknown;
}

let output: vscode.OutputChannel;

function settings(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration("dormant");
}

function dormantPath(folder: vscode.WorkspaceFolder | undefined): string {
  return resolveDormantPath(settings().get<string>("path"), folder?.uri.fsPath, existsSync);
}

async function findServices(): Promise<FolderServices[]> {
  const uris = await vscode.workspace.findFiles(
    "**/{schemas/*.json,generated/interface.json}",
    "**/{node_modules,.venv,.git}/**",
  );
  const perFolder = new Map<vscode.WorkspaceFolder, { files: string[]; interfaces: Map<string, string> }>();
  for (const uri of uris) {
    const folder = vscode.workspace.getWorkspaceFolder(uri);
    if (folder === undefined) continue;
    const entry = perFolder.get(folder) ?? { files: [], interfaces: new Map<string, string>() };
    perFolder.set(folder, entry);
    const rel = path.relative(folder.uri.fsPath, uri.fsPath).split(path.sep).join("/");
    entry.files.push(rel);
    if (rel.endsWith("generated/interface.json")) {
      entry.interfaces.set(rel, Buffer.from(await vscode.workspace.fs.readFile(uri)).toString("utf8"));
    }
  }
  return [...perFolder].map(([folder, e]) => ({ folder, services: discoverServices(e.files, e.interfaces) }));
}

function toTask(definition: DormantTaskDefinition, folder: vscode.WorkspaceFolder): vscode.Task {
  const plan = planTask(definition);
  const execution = new vscode.ProcessExecution(dormantPath(folder), plan.args, { cwd: folder.uri.fsPath });
  const task = new vscode.Task(definition, folder, plan.label, "dormant", execution, plan.problemMatchers);
  task.isBackground = plan.background;
  if (definition.command === "generate" || definition.command === "publish") {
    task.group = vscode.TaskGroup.Build;
  }
  return task;
}

const taskProvider: vscode.TaskProvider = {
  async provideTasks(): Promise<vscode.Task[]> {
    const tasks: vscode.Task[] = [];
    for (const { folder, services } of await findServices()) {
      for (const definition of tasksForServices(services)) {
        tasks.push(toTask(definition, folder));
      }
    }
    return tasks;
  },
  resolveTask(task: vscode.Task): vscode.Task | undefined {
    const folder =
      typeof task.scope === "object" ? task.scope : vscode.workspace.workspaceFolders?.[0];
    if (folder === undefined) return undefined;
    try {
      const resolved = toTask(task.definition as DormantTaskDefinition, folder);
      // Keep the definition object VS Code gave: it identifies the task in tasks.json.
      return new vscode.Task(
        task.definition,
        folder,
        resolved.name,
        "dormant",
        resolved.execution,
        task.problemMatchers.length > 0 ? task.problemMatchers : planTask(task.definition as DormantTaskDefinition).problemMatchers,
      );
    } catch (error) {
      if (error instanceof TaskDefinitionError) {
        void vscode.window.showErrorMessage(`Dormant task: ${error.message}`);
        return undefined;
      }
      throw error;
    }
  },
};

async function pickService(generatedOnly: boolean): Promise<{ folder: vscode.WorkspaceFolder; service: ServiceInfo } | undefined> {
  const items = (await findServices()).flatMap(({ folder, services }) =>
    services
      .filter((s) => !generatedOnly || s.name !== undefined)
      .map((service) => ({ label: service.name ?? service.dir, description: service.dir, folder, service })),
  );
  if (items.length === 0) {
    void vscode.window.showWarningMessage(
      generatedOnly
        ? "No generated Dormant service in this workspace (run `dormant generate DIR` first)."
        : "No Dormant service in this workspace (a directory with schemas/*.json).",
    );
    return undefined;
  }
  return items.length === 1 ? items[0] : vscode.window.showQuickPick(items, { placeHolder: "Dormant service" });
}

async function pickFunction(): Promise<FunctionPick | undefined> {
  const items: FunctionPick[] = (await findServices()).flatMap(({ folder, services }) =>
    services.flatMap((service) =>
      service.functions.map((f) => ({
        label: `${service.name}.${f.name}`,
        description: service.dir,
        folder,
        service,
        fn: f.name,
        input: f.input,
      })),
    ),
  );
  if (items.length === 0) {
    void vscode.window.showWarningMessage("No generated Dormant function in this workspace (run `dormant generate DIR`).");
    return undefined;
  }
  return vscode.window.showQuickPick(items, { placeHolder: "Function to call (SERVICE.FUNCTION)" });
}

async function askInput(context: vscode.ExtensionContext, pick: FunctionPick): Promise<string | undefined> {
  const key = `dormant.lastInput.${pick.label}`;
  const value = context.workspaceState.get<string>(key) ?? JSON.stringify(sampleInput(pick.input));
  const text = await vscode.window.showInputBox({
    title: `Input for ${pick.label} (JSON)`,
    value,
    validateInput: (t) => {
      const checked = checkCallInput(t);
      return checked.ok ? undefined : checked.error;
    },
  });
  if (text === undefined) return undefined;
  const checked = checkCallInput(text);
  if (!checked.ok) return undefined;
  await context.workspaceState.update(key, checked.text);
  return checked.text;
}

function runCall(folder: vscode.WorkspaceFolder, target: string, input: string): void {
  const timeout = settings().get<number>("callTimeoutSeconds", 10);
  const args = ["call", target, input, "--timeout", String(timeout)];
  output.show(true);
  output.appendLine(`$ dormant ${args.map((a) => (/[\s"'{}]/.test(a) ? `'${a}'` : a)).join(" ")}`);
  execFile(dormantPath(folder), args, { cwd: folder.uri.fsPath, timeout: (timeout + 30) * 1000 }, (error, stdout, stderr) => {
    if (stdout) output.appendLine(stdout.trimEnd());
    if (stderr) output.appendLine(stderr.trimEnd());
    if (error !== null) {
      const first = (stderr || error.message).split("\n")[0];
      void vscode.window.showErrorMessage(`${target}: ${first}`);
    }
  });
}

async function runTask(definition: DormantTaskDefinition, folder: vscode.WorkspaceFolder): Promise<void> {
  try {
    await vscode.tasks.executeTask(toTask(definition, folder));
  } catch (error) {
    void vscode.window.showErrorMessage(`Dormant: ${(error as Error).message}`);
  }
}

// ---- the dev mesh's state in the status bar ------------------------------------------------------

function meshFile(folder: vscode.WorkspaceFolder): string {
  const stateDir = settings().get<string>("devStateDir", ".dormant/dev");
  return path.resolve(folder.uri.fsPath, stateDir, "mesh.json");
}

function readMesh(folder: vscode.WorkspaceFolder | undefined): MeshRead {
  if (folder === undefined) return { kind: "absent" };
  let text: string | undefined;
  try {
    text = readFileSync(meshFile(folder), "utf8");
  } catch {
    text = undefined;
  }
  return parseMeshRecord(text);
}

function probe(read: MeshRead): Promise<Probe> {
  if (read.kind !== "record" || read.record.healthUrl === undefined) return Promise.resolve("unknown");
  const url = read.record.healthUrl;
  const caFile = read.record.caFile;
  return new Promise((resolve) => {
    const options: https.RequestOptions = { timeout: 2000 };
    if (url.startsWith("https:") && caFile !== undefined && existsSync(caFile)) {
      options.ca = readFileSync(caFile);
    }
    const request = (url.startsWith("https:") ? https : http).get(url, options, (response) => {
      response.resume();
      resolve(response.statusCode !== undefined && response.statusCode < 500 ? "up" : "down");
    });
    request.on("timeout", () => request.destroy(new Error("timeout")));
    request.on("error", () => resolve("down"));
  });
}

class MeshStatus implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  private timer: NodeJS.Timeout | undefined;
  private watcher: vscode.FileSystemWatcher | undefined;

  constructor() {
    this.item.command = COMMANDS.showMeshStatus;
    this.restart();
  }

  restart(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.watcher?.dispose();
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (folder !== undefined) {
      const file = meshFile(folder);
      this.watcher = vscode.workspace.createFileSystemWatcher(
        new vscode.RelativePattern(vscode.Uri.file(path.dirname(file)), path.basename(file)),
      );
      const refresh = (): void => void this.refresh();
      this.watcher.onDidCreate(refresh);
      this.watcher.onDidChange(refresh);
      this.watcher.onDidDelete(refresh);
    }
    const seconds = Math.max(1, settings().get<number>("statusRefreshSeconds", 5));
    this.timer = setInterval(() => void this.refresh(), seconds * 1000);
    void this.refresh();
  }

  async refresh(): Promise<void> {
    const read = readMesh(vscode.workspace.workspaceFolders?.[0]);
    const view = describeMesh(read, await probe(read));
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.tone === "warning" ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    this.item.show();
  }

  dispose(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.watcher?.dispose();
    this.item.dispose();
  }
}

// ---- launch configurations ----------------------------------------------------------------------

async function addLaunchConfigurations(): Promise<void> {
  const found = await findServices();
  const folder = found[0]?.folder ?? vscode.workspace.workspaceFolders?.[0];
  if (folder === undefined) {
    void vscode.window.showWarningMessage("Open a folder first: launch.json lives in a workspace folder.");
    return;
  }
  const services = found.find((f) => f.folder === folder)?.services ?? [];
  const configurations = services.flatMap((s) => {
    const first = s.functions[0];
    const call = first === undefined ? [] : [debugFunctionConfiguration(s.dir, first.name, JSON.stringify(sampleInput(first.input)))];
    return [...call, debugTestsConfiguration(s.dir)];
  });
  const uri = vscode.Uri.joinPath(folder.uri, ".vscode", "launch.json");
  let existing: unknown;
  try {
    const text = Buffer.from(await vscode.workspace.fs.readFile(uri)).toString("utf8");
    existing = JSON.parse(stripJsonc(text));
  } catch (error) {
    if (!(error instanceof vscode.FileSystemError)) {
      void vscode.window.showErrorMessage(`.vscode/launch.json cannot be read as JSON (${(error as Error).message}); left as is.`);
      return;
    }
  }
  const merged = mergeLaunch(existing, configurations);
  await vscode.workspace.fs.writeFile(uri, Buffer.from(JSON.stringify(merged, null, 2) + "\n", "utf8"));
  await vscode.window.showTextDocument(uri);
}

// ---- activation ---------------------------------------------------------------------------------

export function activate(context: vscode.ExtensionContext): void {
  output = vscode.window.createOutputChannel("Dormant");
  const status = new MeshStatus();
  const register = (id: string, run: (...args: unknown[]) => unknown): void => {
    context.subscriptions.push(vscode.commands.registerCommand(id, run));
  };
  context.subscriptions.push(
    output,
    status,
    vscode.tasks.registerTaskProvider(TASK_TYPE, taskProvider),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("dormant")) status.restart();
    }),
  );

  for (const command of ["generate", "publish"] as const) {
    register(COMMANDS[command], async () => {
      const picked = await pickService(false);
      if (picked) await runTask({ type: TASK_TYPE, command, dir: picked.service.dir }, picked.folder);
    });
  }
  register(COMMANDS.deploy, async () => {
    const picked = await pickService(true);
    if (picked) await runTask({ type: TASK_TYPE, command: "deploy", service: picked.service.name }, picked.folder);
  });
  register(COMMANDS.followLogs, async () => {
    const picked = await pickService(true);
    if (picked) await runTask({ type: TASK_TYPE, command: "logs", service: picked.service.name }, picked.folder);
  });
  register(COMMANDS.call, async () => {
    const pick = await pickFunction();
    const input = pick && (await askInput(context, pick));
    if (pick && input !== undefined) runCall(pick.folder, pick.label, input);
  });
  register(COMMANDS.callWithEditorInput, async () => {
    const editor = vscode.window.activeTextEditor;
    if (editor === undefined) {
      void vscode.window.showWarningMessage("Open (or select) the JSON input in an editor first.");
      return;
    }
    const text = editor.selection.isEmpty ? editor.document.getText() : editor.document.getText(editor.selection);
    const checked = checkCallInput(text);
    if (!checked.ok) {
      void vscode.window.showErrorMessage(`The call input is ${checked.error}`);
      return;
    }
    const pick = await pickFunction();
    if (pick) runCall(pick.folder, pick.label, checked.text);
  });
  register(COMMANDS.showMeshStatus, async () => {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const read = readMesh(folder);
    await status.refresh();
    if (read.kind !== "record" || folder === undefined) {
      void vscode.window.showInformationMessage(describeMesh(read, "unknown").tooltip);
      return;
    }
    output.show(true);
    output.appendLine(`$ dormant status ${read.record.service}`);
    execFile(dormantPath(folder), ["status", read.record.service], { cwd: folder.uri.fsPath, timeout: 60_000 }, (_e, out, err) => {
      output.appendLine((out + err).trimEnd());
    });
  });
  register(COMMANDS.refreshMeshState, () => status.refresh());
  register(COMMANDS.debugScriptPath, () => context.asAbsolutePath(path.join("python", "dormant_debug_call.py")));
  register(COMMANDS.debugFunction, async () => {
    const pick = await pickFunction();
    const input = pick && (await askInput(context, pick));
    if (pick === undefined || input === undefined) return;
    const script = context.asAbsolutePath(path.join("python", "dormant_debug_call.py"));
    const started = await vscode.debug.startDebugging(
      pick.folder,
      debugFunctionConfiguration(pick.service.dir, pick.fn, input, script),
    );
    if (!started) {
      void vscode.window.showErrorMessage("Could not start a Python debug session: is the Python extension (debugpy) installed?");
    }
  });
  register(COMMANDS.addLaunchConfigurations, addLaunchConfigurations);
}

export function deactivate(): void {}
