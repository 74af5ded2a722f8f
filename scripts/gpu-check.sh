#!/usr/bin/env bash
# npm run gpu:check [-- OUT_DIR]: the whole GPU check in one command, for an H100/H200 (issue 9):
#   1 info        nmsparse info --json --require-gpu    (what loaded, from where; stops nothing, but fails loudly)
#   2 test-gpu    vitest run test/gpu with NMSPARSE_REQUIRE_GPU=1 (a skipped GPU suite is a failure)
#   3 bench-gpu   nmsparse bench gpu --quick             (cuSPARSELt vs cuBLASLt, writes gpu-<gpu>.json/.md)
#   4 train-cuda  one MNIST epoch of SR-STE 2:4 with --device cuda
#   5 bench-train nmsparse bench train --device cuda     (issue 12's H100/H200 step: MLP width 8192, 8192 tokens,
#                 float32; dense vs SR-STE 2:4 / 1:4, each also dense-masked)
#   6 bench-train-bf16, 7 bench-train-fp16: the same step with --precision bfloat16 / float16, dense vs STE vs
#                 SR-STE 2:4, each also transposable (dX from W̃ᵀ through cuSPARSELt too) (issue 12's target:
#                 SR-STE 2:4 >= 1.2x dense)
#   8 bench-serve nmsparse bench serve --device cuda     (the serving path on the GPU)
# Each step writes <step>.log (and its JSON) into OUT_DIR (the argument, else $OUT, else bench/results) as it runs,
# so a run cut short keeps what it measured. A failing step is recorded and the next one runs; the exit status is 1
# when any step failed. gpu-check.json lists every step's command, exit status and seconds, rewritten after each.
# Needs the addon built (build/Release or a prebuild) and dist/ compiled (npm run build:ts).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-${OUT:-bench/results}}"
mkdir -p "$out" || exit 1
out="$(cd "$out" && pwd)"
export NMSPARSE_REQUIRE_GPU=1 NO_COLOR=1
nms=(node dist/cli/index.js)
steps_json=""
failed=0

# step NAME SECONDS CMD...: runs CMD with a time limit, its output both shown and kept in OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee "$out/$name.log"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  local secs=$((SECONDS - t0))
  [ "$rc" -eq 124 ] && echo "== $name: stopped after ${limit} s" | tee -a "$out/$name.log"
  echo "== $name: exit $rc after ${secs} s" | tee -a "$out/$name.log"
  [ "$rc" -ne 0 ] && failed=1
  local cmd
  cmd=$(printf '%s ' "$@" | sed 's/\\/\\\\/g; s/"/\\"/g; s/ $//')
  steps_json="${steps_json:+$steps_json,
}    {\"step\": \"$name\", \"command\": \"$cmd\", \"exit\": $rc, \"seconds\": $secs}"
  printf '{\n  "date": "%s",\n  "out": "%s",\n  "steps": [\n%s\n  ]\n}\n' "$(date -u +%FT%TZ)" "$out" "$steps_json" > "$out/gpu-check.json"
}

step info 60 bash -c "${nms[*]} info --json > '$out/info.json'; ${nms[*]} info --require-gpu"
step test-gpu 300 node node_modules/vitest/vitest.mjs run test/gpu --reporter=default --reporter=json \
  --outputFile.json="$out/test-gpu.json"
step bench-gpu 300 "${nms[@]}" bench gpu --quick --out "$out"
step train-cuda 240 "${nms[@]}" train --model mlp --recipe srste --pattern 2:4 --epochs 1 --device cuda \
  --out "$out/train-cuda"
step bench-train 240 "${nms[@]}" bench train --device cuda --model mlp --hidden 8192,8192 --batch 8192 \
  --recipes dense,srste --patterns 2:4,1:4 --dense-kernels --epochs 0 --steps 10 --out "$out"
step bench-train-bf16 240 "${nms[@]}" bench train --device cuda --model mlp --hidden 8192,8192 --batch 8192 \
  --recipes dense,ste,srste --patterns 2:4 --transposable --precision bfloat16 --epochs 0 --steps 10 --out "$out"
step bench-train-fp16 240 "${nms[@]}" bench train --device cuda --model mlp --hidden 8192,8192 --batch 8192 \
  --recipes dense,ste,srste --patterns 2:4 --transposable --precision float16 --epochs 0 --steps 10 --out "$out"
step bench-serve 180 "${nms[@]}" bench serve --device cuda --requests 2000 --rounds 2 --out "$out"

echo "gpu:check wrote $out: $(node -e 'const j = require(process.argv[1]); console.log(j.steps.map((s) => `${s.step} exit ${s.exit} (${s.seconds} s)`).join(", "))' "$out/gpu-check.json")"
exit $failed
