#!/usr/bin/env bash
# Checks the npm tarball the way a user meets it: the right files and nothing else, then installed into an empty
# directory twice (with --ignore-scripts, which must work from the prebuild alone, and with scripts), where
# `import { nm } from 'nmsparse'` and `npx nmsparse info` must work.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n 1)
echo "check-pack: $tarball ($(du -h "$work/$tarball" | cut -f1))"
tar -tzf "$work/$tarball" | sed 's|^package/||' | sort > "$work/files.txt"
for f in dist/index.js dist/index.d.ts dist/cli/index.js native/core/threadpool.cc native/cpu/spmm.cc native/napi/addon.cc \
         CMakeLists.txt binding.gyp README.md CHANGELOG.md LICENSE package.json scripts/install.mjs scripts/source-hash.cjs scripts/gyp-sources.cjs; do
  grep -qxF "$f" "$work/files.txt" || { echo "check-pack: missing $f"; exit 1; }
done
ls prebuilds/*/*.node >/dev/null 2>&1 && { grep -q '^prebuilds/.*\.node$' "$work/files.txt" || { echo "check-pack: prebuilds missing"; exit 1; }; }
if grep -E '^(test/|build/|bench/|\.ci/|\.gpu/|node_modules/|docs/)|\.test\.|\.o$' "$work/files.txt"; then
  echo "check-pack: the files above must not be in the tarball"; exit 1
fi

for mode in --ignore-scripts scripts; do
  dir="$work/app-${mode#--}"
  mkdir -p "$dir" && cd "$dir"
  echo '{"name":"app","version":"1.0.0","type":"module","private":true}' > package.json
  if [ "$mode" = --ignore-scripts ]; then npm install --no-audit --no-fund --ignore-scripts "$work/$tarball" >/dev/null
  else npm install --no-audit --no-fund "$work/$tarball" >/dev/null; fi
  node -e "import('nmsparse').then(({ nm, randn }) => { const s = nm.compress(randn([8, 16], { seed: 1 }), '2:4'); if (!nm.check(s.decompress(), '2:4').ok) process.exit(1); console.log('check-pack: import works (${mode})'); })"
  npx --no-install nmsparse info
  cd - >/dev/null
done
echo "check-pack: ok"
