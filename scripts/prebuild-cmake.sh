#!/usr/bin/env bash
# prebuildify's --node-gyp hook: prebuildify calls it like node-gyp (`rebuild --target=… --arch=… --release`);
# we ignore those arguments and run the full cmake-js build (CUDA kernels included when nvcc is found).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec node node_modules/cmake-js/bin/cmake-js rebuild --log-level warn
