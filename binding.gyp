# node-gyp build of the native addon: an ALTERNATIVE to the default build.
#
# The default build is cmake-js with CMakeLists.txt: `npm install` runs
# scripts/build-native.js, and `npm run build:native` rebuilds. Both write
# build/Release/hdlm.node. This file builds the same sources with the same flags for
# setups that prefer node-gyp (a `prebuildify` run, an environment without cmake):
#
#   npx node-gyp rebuild            # add --nodedir=/usr where Node's headers are installed
#                                   # (Debian's nodejs), so node-gyp downloads none
#   node -e "console.log(require('./build/Release/hdlm.node').runtimeInfo())"
#
# libtorch is found exactly as for cmake-js (scripts/find-libtorch.js: LIBTORCH, Torch_DIR /
# CMAKE_PREFIX_PATH, python3's torch, the system libtorch-dev); scripts/gyp-libtorch.js turns
# it into what find_package(Torch) gives CMake: -isystem include dirs, the libstdc++ ABI
# (_GLIBCXX_USE_CXX11_ABI from TorchConfig.cmake), the imported targets' compile definitions
# (USE_DISTRIBUTED, ... which change class layouts in torch headers), and the libraries.
# Differences from the CMake build: -ffp-contract=off applies to every file, not only
# sampler.cc (gyp has no per-source flags; on x86-64 without -mfma it changes nothing);
# paths with spaces in them are not supported; Linux only (GNU ld flags). node-gyp and
# cmake-js share build/: after a node-gyp build, `npm run build:native` returns to cmake-js.
{
  "variables": {
    "hdlm_torch_cuda": "<!(node scripts/gyp-libtorch.js cuda)",
    "hdlm_torch_libdir": "<!(node scripts/gyp-libtorch.js libdir)"
  },
  "targets": [
    {
      "target_name": "hdlm",
      "sources": [
        "native/addon.cc",
        "native/engine.cc",
        "native/checkpoint.cc",
        "native/model_epsilon.cc",
        "native/fast_forward.cc",
        "native/fused_kernels.cc",
        "native/model_gamma.cc",
        "native/sampler.cc",
        "native/sampler_shifted.cc",
        "native/sampler_gamma.cc",
        "native/metaschedule.cc",
        "native/eval.cc",
        "native/model_gpt2.cc"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "<!@(node scripts/gyp-libtorch.js defines)"
      ],
      # node's common.gypi turns RTTI and exceptions off, adds -Wextra and picks the C++
      # standard; libtorch needs both on, CMakeLists.txt warns with -Wall only and builds
      # as C++17 (gnu++17).
      "cflags!": ["-fno-exceptions", "-fno-rtti", "-Wextra"],
      # (A "!" list also removes what this target adds, so gnu++17 is only overridden by
      # coming later on the command line, not excluded.)
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++20", "-std=c++20"],
      "cflags": [
        "-Wall",
        "-Wno-unused-parameter",
        "-ffp-contract=off",
        "<!@(node scripts/gyp-libtorch.js cflags)"
      ],
      "cflags_cc": ["-std=gnu++17", "-fexceptions", "-frtti"],
      "library_dirs": ["<(hdlm_torch_libdir)"],
      "libraries": ["<!@(node scripts/gyp-libtorch.js libraries)"],
      # -z now: an ABI mismatch fails at require() instead of at the first call.
      # rpath: libtorch's libraries are found at run time without LD_LIBRARY_PATH.
      "ldflags": [
        "-Wl,-z,now",
        "-Wl,--no-undefined-version",
        "-Wl,-rpath,<(hdlm_torch_libdir)"
      ],
      "conditions": [
        ["hdlm_torch_cuda==1", {
          "defines": ["HDLM_WITH_CUDA=1"]
        }]
      ]
    }
  ]
}
