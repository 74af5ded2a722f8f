{
  # CPU-only fallback for machines without CMake: the same folders as CMakeLists.txt minus native/cuda.
  "targets": [{
    "target_name": "nmsparse",
    "sources": ["<!@(node scripts/gyp-sources.cjs native/core native/cpu native/napi)"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native", "<(INTERMEDIATE_DIR)/gen"],
    "actions": [{
      "action_name": "build_info",
      "inputs": ["scripts/source-hash.cjs"],
      "outputs": ["<(INTERMEDIATE_DIR)/gen/build_info.h"],
      "action": ["node", "scripts/source-hash.cjs", "--header", "<(INTERMEDIATE_DIR)/gen/build_info.h"]
    }],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=gnu++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "libraries": ["-ldl", "-lpthread"],
    "conditions": [["OS=='linux'", {"ldflags": ["-Wl,-z,nodelete"]}]]
  }]
}
