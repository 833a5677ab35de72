/**
 * Dormant's compiler-style diagnostics (`path:line:col: error: message`, written by `dormant generate`,
 * `build` and `publish` from codegen/dormant_codegen/diagnostics.py): the regular expression the
 * `dormant` problem matcher in package.json uses, and a parser with the same meaning for the output
 * the extension reads itself.
 */

/**
 * The problem matcher's pattern: file, line, column, severity, message. The path may be relative (to
 * the directory the command ran in) or absolute, and may hold a colon (a Windows drive letter); the
 * lazy `.+?` stops at the first `:line:col: severity:` that follows.
 */
export const DIAGNOSTIC_PATTERN = "^(.+?):(\\d+):(\\d+):\\s+(error|warning|note):\\s+(.*)$";

export type Severity = "error" | "warning" | "note";

export interface ParsedDiagnostic {
  file: string;
  /** 1-based, as printed. */
  line: number;
  /** 1-based, as printed. */
  column: number;
  severity: Severity;
  message: string;
}

const LINE_RE = new RegExp(DIAGNOSTIC_PATTERN);

/** The diagnostic on one line of output, or undefined when the line is not one. */
export function parseDiagnosticLine(line: string): ParsedDiagnostic | undefined {
  const match = LINE_RE.exec(line.replace(/\r$/, ""));
  if (match === null) {
    return undefined;
  }
  const [, file, lineText, columnText, severity, message] = match;
  return {
    file,
    line: Number(lineText),
    column: Number(columnText),
    severity: severity as Severity,
    message,
  };
}

/** Every diagnostic in a command's output (other lines, such as `stale: ...`, are skipped). */
export function parseDiagnostics(output: string): ParsedDiagnostic[] {
  const found: ParsedDiagnostic[] = [];
  for (const line of output.split("\n")) {
    const diagnostic = parseDiagnosticLine(line);
    if (diagnostic !== undefined) {
      found.push(diagnostic);
    }
  }
  return found;
}
