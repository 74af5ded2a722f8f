// Hash of every file under native/ (sorted relative paths and contents, sha256, first 16 hex digits).
// The build embeds it in the addon (buildInfo().sourceHash) so a prebuild that no longer matches the sources is
// caught by test/prebuilds.test.ts.
//   node scripts/source-hash.cjs            prints the hash
//   node scripts/source-hash.cjs --header F writes `#define NMSPARSE_SOURCE_HASH "…"` and the package version to F
//                                           (only when it changed, so unchanged sources rebuild nothing)
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');

function walk(dir, out) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

function sourceHash() {
  const h = crypto.createHash('sha256');
  for (const f of walk(path.join(root, 'native'), []).sort()) {
    h.update(path.relative(root, f).split(path.sep).join('/'));
    h.update('\0');
    h.update(fs.readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

module.exports = { sourceHash };

if (require.main === module) {
  const i = process.argv.indexOf('--header');
  if (i < 0) {
    process.stdout.write(sourceHash());
  } else {
    const file = process.argv[i + 1];
    const version = require(path.join(root, 'package.json')).version;
    const text = `#define NMSPARSE_SOURCE_HASH "${sourceHash()}"\n#define NMSPARSE_VERSION "${version}"\n`;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== text) fs.writeFileSync(file, text);
  }
}
