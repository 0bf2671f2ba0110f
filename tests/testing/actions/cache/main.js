// actions/cache's behaviour, on a directory: the main step restores, the post step saves on a miss.
const fs = require("fs");
const os = require("os");
const path = require("path");

const store = process.env.ACT_STANDIN_CACHE;
const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] || "").trim();
const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
const paths = lines(input("path")).map((p) =>
  path.resolve(process.env.GITHUB_WORKSPACE, p.startsWith("~") ? path.join(os.homedir(), p.slice(1)) : p));
const key = input("key");
const post = process.env.STATE_CACHE_MAIN_DONE === "true";

function copy(from, to) {
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
}

if (!post) {
  fs.appendFileSync(process.env.GITHUB_STATE, "CACHE_MAIN_DONE=true\n");
  let hit = fs.existsSync(path.join(store, key)) ? key : null;
  const exact = hit !== null;
  for (const prefix of lines(input("restore-keys"))) {
    if (hit) break;
    const found = fs.existsSync(store) ? fs.readdirSync(store).filter((k) => k.startsWith(prefix)) : [];
    found.sort((a, b) => fs.statSync(path.join(store, b)).mtimeMs - fs.statSync(path.join(store, a)).mtimeMs);
    hit = found[0] || null;
  }
  if (hit) {
    paths.forEach((p, i) => {
      const saved = path.join(store, hit, String(i));
      if (fs.existsSync(saved)) copy(saved, p);
    });
  }
  fs.appendFileSync(process.env.GITHUB_STATE, `CACHE_EXACT=${exact}\n`);
  fs.appendFileSync(process.env.GITHUB_OUTPUT, `cache-hit=${exact}\n`);
  console.log(hit ? `Cache restored from key: ${hit}` : `Cache not found for input keys: ${key}`);
} else if (process.env.STATE_CACHE_EXACT === "true") {
  console.log(`Cache hit occurred on the primary key ${key}, not saving cache.`);
} else {
  const into = path.join(store, `${key}.partial-${process.pid}`);
  paths.forEach((p, i) => { if (fs.existsSync(p)) copy(p, path.join(into, String(i))); });
  fs.mkdirSync(into, { recursive: true });
  fs.renameSync(into, path.join(store, key));
  console.log(`Cache saved with key: ${key}`);
}
