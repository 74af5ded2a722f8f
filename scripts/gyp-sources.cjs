// Prints the C++ sources of the given native/ folders for binding.gyp, so the node-gyp fallback takes its
// sources by folder exactly like CMakeLists.txt does (no second hand-kept list).
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const files = [];
for (const dir of process.argv.slice(2)) {
  for (const f of fs.readdirSync(path.join(root, dir)).sort()) if (f.endsWith('.cc')) files.push(`${dir}/${f}`);
}
process.stdout.write(files.join(' '));
