/** The commands this extension registers (package.json's contributes.commands must list the same ids). */

export const COMMANDS = {
  generate: "dormant.generate",
  publish: "dormant.publish",
  deploy: "dormant.deploy",
  call: "dormant.call",
  callWithEditorInput: "dormant.callWithEditorInput",
  followLogs: "dormant.followLogs",
  showMeshStatus: "dormant.showMeshStatus",
  refreshMeshState: "dormant.refreshMeshState",
  debugFunction: "dormant.debugFunction",
  addLaunchConfigurations: "dormant.addLaunchConfigurations",
  debugScriptPath: "dormant.debugScriptPath",
} as const;

/** Resolves the `dormant` executable: the setting when given, else the workspace's .venv, else PATH. */
export function resolveDormantPath(
  setting: string | undefined,
  workspaceFolder: string | undefined,
  exists: (path: string) => boolean,
  platform: string = process.platform,
): string {
  const configured = (setting ?? "").trim();
  if (configured !== "") {
    return workspaceFolder === undefined ? configured : configured.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  if (workspaceFolder !== undefined) {
    const venv =
      platform === "win32" ? `${workspaceFolder}\\.venv\\Scripts\\dormant.exe` : `${workspaceFolder}/.venv/bin/dormant`;
    if (exists(venv)) {
      return venv;
    }
  }
  return "dormant";
}
