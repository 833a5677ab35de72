// Reads the facts codegen needs out of a Node service's TypeScript sources, with the TypeScript
// compiler's parser only (no type check, no user code run): for each file its syntax errors, its imports
// from "@dormant/runtime", and its classes with their decorators and methods (parameter and return type
// references), each with a 1-based line and column. The Python side (dormant_codegen.node.reader) checks
// the facts and turns mistakes into diagnostics, so every message is worded in one place.
//
// Usage: node read_sources.js TYPESCRIPT_MODULE_DIR   (stdin: {"files": [{"path", "text"}]}, stdout: JSON)
"use strict";

const ts = require(process.argv[2]);

function position(sf, node) {
  const start = node.getStart(sf);
  const { line, character } = sf.getLineAndCharacterOfPosition(start);
  return { line: line + 1, col: character + 1 };
}

function value(sf, node) {
  const at = position(sf, node);
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
    return { kind: "string", value: node.text, ...at };
  }
  if (ts.isNumericLiteral(node)) return { kind: "number", value: Number(node.text), ...at };
  if (
    ts.isPrefixUnaryExpression(node) &&
    node.operator === ts.SyntaxKind.MinusToken &&
    ts.isNumericLiteral(node.operand)
  ) {
    return { kind: "number", value: -Number(node.operand.text), ...at };
  }
  if (node.kind === ts.SyntaxKind.TrueKeyword) return { kind: "boolean", value: true, ...at };
  if (node.kind === ts.SyntaxKind.FalseKeyword) return { kind: "boolean", value: false, ...at };
  if (ts.isArrayLiteralExpression(node)) {
    return { kind: "array", items: node.elements.map((e) => value(sf, e)), ...at };
  }
  if (ts.isObjectLiteralExpression(node)) {
    const props = [];
    let plain = true;
    for (const p of node.properties) {
      if (ts.isPropertyAssignment(p) && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) {
        props.push({ key: p.name.text, value: value(sf, p.initializer), ...position(sf, p.name) });
      } else {
        plain = false;
      }
    }
    if (plain) return { kind: "object", props, ...at };
  }
  return { kind: "other", text: node.getText(sf), ...at };
}

function typeRef(sf, node) {
  if (!node) return null;
  const ref = { text: node.getText(sf), name: null, args: [], ...position(sf, node) };
  if (ts.isTypeReferenceNode(node)) {
    const n = node.typeName;
    ref.name = ts.isIdentifier(n) ? n.text : n.right.text;
    ref.args = (node.typeArguments || []).map((a) => typeRef(sf, a));
  }
  return ref;
}

function decorators(sf, node) {
  const found = [];
  for (const d of ts.canHaveDecorators(node) ? ts.getDecorators(node) || [] : []) {
    const expr = d.expression;
    const entry = { ...position(sf, d), callee: null, namespace: null, called: false, args: [] };
    let callee = expr;
    if (ts.isCallExpression(expr)) {
      entry.called = true;
      entry.args = expr.arguments.map((a) => value(sf, a));
      callee = expr.expression;
    }
    if (ts.isIdentifier(callee)) {
      entry.callee = callee.text;
    } else if (ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression)) {
      entry.callee = callee.name.text;
      entry.namespace = callee.expression.text;
    }
    found.push(entry);
  }
  return found;
}

function memberName(sf, name) {
  if (ts.isIdentifier(name) || ts.isStringLiteral(name)) return { name: name.text, plain: true };
  if (ts.isPrivateIdentifier(name)) return { name: name.text, plain: false };
  return { name: name.getText(sf), plain: false };
}

function readClass(sf, node) {
  const cls = {
    name: node.name ? node.name.text : null,
    ...position(sf, node.name || node),
    decorators: decorators(sf, node),
    members: [],
  };
  for (const m of node.members) {
    const decos = decorators(sf, m);
    if (!decos.length) continue;
    const modifiers = ts.getModifiers ? ts.getModifiers(m) || [] : [];
    const member = {
      kind: ts.isMethodDeclaration(m) ? "method" : "other",
      ...memberName(sf, m.name || m),
      ...position(sf, m.name || m),
      static: modifiers.some((x) => x.kind === ts.SyntaxKind.StaticKeyword),
      async: modifiers.some((x) => x.kind === ts.SyntaxKind.AsyncKeyword),
      decorators: decos,
      params: [],
      returns: null,
    };
    if (ts.isMethodDeclaration(m)) {
      member.params = m.parameters.map((p) => ({
        name: p.name.getText(sf),
        type: typeRef(sf, p.type),
        ...position(sf, p),
      }));
      member.returns = typeRef(sf, m.type);
    }
    cls.members.push(member);
  }
  return cls;
}

function readFile(path, text) {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const syntaxErrors = (sf.parseDiagnostics || []).map((d) => {
    const { line, character } = sf.getLineAndCharacterOfPosition(d.start || 0);
    return {
      line: line + 1,
      col: character + 1,
      message: ts.flattenDiagnosticMessageText(d.messageText, " "),
    };
  });
  const imports = { names: {}, namespaces: [] };
  const classes = [];
  const visit = (node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      if (node.moduleSpecifier.text === "@dormant/runtime" && clause && clause.namedBindings) {
        const b = clause.namedBindings;
        if (ts.isNamespaceImport(b)) imports.namespaces.push(b.name.text);
        else for (const el of b.elements) imports.names[el.name.text] = (el.propertyName || el.name).text;
      }
    } else if (ts.isClassDeclaration(node)) {
      classes.push(readClass(sf, node));
    }
  };
  ts.forEachChild(sf, visit);
  return { path, syntaxErrors, imports, classes };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const files = request.files.map((f) => readFile(f.path, f.text));
  process.stdout.write(JSON.stringify({ typescript: ts.version, files }));
});
