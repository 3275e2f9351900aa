// Validates AsyncAPI documents with the AsyncAPI project's own parser (schema, references,
// and its ruleset): `node deploy/asyncapi/validate.cjs <parser install dir> <document>...`.
// Prints each finding as one JSON line; exits 1 when a document has an error or a warning.
// The parser is installed under .state/asyncapi by deploy/local/install-asyncapi-parser.sh.
'use strict';
const { createRequire } = require('node:module');
const { readFileSync } = require('node:fs');
const path = require('node:path');

const [installDir, ...documents] = process.argv.slice(2);
if (!installDir || documents.length === 0) {
  console.error('usage: node validate.cjs <parser install dir> <document>...');
  process.exit(2);
}
const requireInstalled = createRequire(path.join(path.resolve(installDir), 'package.json'));
const { Parser, DiagnosticSeverity } = requireInstalled('@asyncapi/parser');
const SEVERITY = ['error', 'warning', 'information', 'hint'];

async function main() {
  const parser = new Parser();
  let failed = false;
  for (const file of documents) {
    const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'), {
      source: path.resolve(file),
    });
    for (const d of diagnostics) {
      const severity = SEVERITY[d.severity] || String(d.severity);
      console.log(JSON.stringify({ file, severity, code: d.code, message: d.message, path: d.path.join('/') }));
      if (d.severity <= DiagnosticSeverity.Warning) failed = true;
    }
    if (!document) failed = true;
    console.log(JSON.stringify({ file, parsed: Boolean(document), version: document ? document.version() : null }));
  }
  process.exit(failed ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
