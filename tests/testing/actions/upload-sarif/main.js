// Check that the file is SARIF 2.1.0 (what code scanning accepts) and keep it, as the upload would.
const fs = require("fs");
const path = require("path");
const file = path.resolve(process.env.GITHUB_WORKSPACE, process.env["INPUT_SARIF_FILE"]);
const category = process.env["INPUT_CATEGORY"] || "default";
const sarif = JSON.parse(fs.readFileSync(file, "utf8"));
if (sarif.version !== "2.1.0" || !Array.isArray(sarif.runs)) {
  console.log(`::error::${file} is not SARIF 2.1.0`);
  process.exit(1);
}
const dest = path.join(process.env.ACT_STANDIN_ARTIFACTS, process.env.GITHUB_RUN_ID, "code-scanning");
fs.mkdirSync(dest, { recursive: true });
fs.copyFileSync(file, path.join(dest, `${category}.sarif`));
console.log(`upload-sarif stand-in: ${category}: ${sarif.runs.length} run(s)`);
