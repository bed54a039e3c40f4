# node-gyp build of the native addon: the front door prebuildify uses for the prebuilt binaries
# that ship in the package (`npm run package:prebuild`, scripts/prebuild.js). The default build is
# cmake-js with CMakeLists.txt (`npm install` runs scripts/build-native.js; `npm run build:native`
# rebuilds). Both write build/Release/hdlm.node; test/91-prebuild-equivalence.test.js checks that a
# prebuild and a cmake-js build sample identically.
#
#   npx node-gyp rebuild            # add --nodedir=/usr where Node's headers are installed
#                                   # (Debian's nodejs), so node-gyp downloads none
#   node -e "console.log(require('./build/Release/hdlm.node').runtimeInfo())"
#
# Both builds read native/sources.json (here through scripts/build-config.js): the sources, the
# files embedded as strings (scripts/embed-sources.js writes their header, an action below), the
# include directories, the C++ standard, the defines and one set of compiler and linker flags
# for every file. libtorch is found exactly as for cmake-js (scripts/find-libtorch.js: LIBTORCH,
# Torch_DIR / CMAKE_PREFIX_PATH, python3's torch, the system libtorch-dev);
# scripts/gyp-libtorch.js turns it into what find_package(Torch) gives CMake: -isystem include
# dirs, the libstdc++ ABI (_GLIBCXX_USE_CXX11_ABI from TorchConfig.cmake), the imported targets'
# compile definitions (USE_DISTRIBUTED, ... which change class layouts in torch headers), and the
# libraries. Limits of this front door: paths with spaces in them are not supported; Linux only
# (GNU ld flags). node-gyp and cmake-js share build/: after a node-gyp build, `npm run
# build:native` returns to cmake-js.
{
  "variables": {
    "hdlm_torch_cuda": "<!(node scripts/gyp-libtorch.js cuda)",
    "hdlm_torch_libdir": "<!(node scripts/gyp-libtorch.js libdir)",
    "hdlm_cxx_standard": "<!(node scripts/build-config.js cxx_standard)"
  },
  "targets": [
    {
      "target_name": "hdlm",
      "sources": ["<!@(node scripts/build-config.js sources)"],
      "actions": [
        {
          "action_name": "embed_sources",
          "inputs": [
            "scripts/embed-sources.js",
            "native/sources.json",
            "<!@(node scripts/build-config.js embedded)"
          ],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/hdlm_embedded_sources.h"],
          "action": ["node", "scripts/embed-sources.js", "<@(_outputs)"],
          "message": "Embedding native/jit and native/cuda sources"
        }
      ],
      "include_dirs": [
        "<!@(node scripts/build-config.js include_dirs)",
        "<(SHARED_INTERMEDIATE_DIR)",
        "<!@(node -p \"require('node-addon-api').include\")"
      ],
      "defines": [
        "<!@(node scripts/build-config.js defines)",
        "<!@(node scripts/gyp-libtorch.js defines)"
      ],
      # node's common.gypi turns RTTI and exceptions off, adds -Wextra and picks the C++
      # standard; sources.json's flags turn RTTI and exceptions back on, and CMakeLists.txt
      # warns with -Wall only.
      "cflags!": ["-fno-exceptions", "-fno-rtti", "-Wextra"],
      # (A "!" list also removes what this target adds, so the standard is only overridden by
      # coming later on the command line, not excluded.)
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++20", "-std=c++20"],
      "cflags": [
        "<!@(node scripts/build-config.js cflags)",
        "<!@(node scripts/gyp-libtorch.js cflags)"
      ],
      "cflags_cc": ["-std=gnu++<(hdlm_cxx_standard)"],
      # common.gypi keeps frame pointers in Release builds (for perf(1) on Node itself); the
      # cmake-js build, which the tests and benchmarks run, does not, and neither does this one.
      "configurations": {
        "Release": {
          "cflags!": ["-fno-omit-frame-pointer"]
        }
      },
      "library_dirs": ["<(hdlm_torch_libdir)"],
      "libraries": ["<!@(node scripts/gyp-libtorch.js libraries)"],
      # rpath: libtorch's libraries are found at run time without LD_LIBRARY_PATH.
      "ldflags": [
        "<!@(node scripts/build-config.js ldflags)",
        "-Wl,-rpath,<(hdlm_torch_libdir)"
      ],
      "conditions": [
        ["hdlm_torch_cuda==1", {
          "defines": ["HDLM_WITH_CUDA=1"]
        }]
      ]
    },
    {
      # opens a libtorch's libraries by path before a prebuilt hdlm.node is loaded
      # (lib/native/prebuilds.ts); no libtorch, so the same for every libtorch
      "target_name": "hdlm_libloader",
      "sources": ["<!@(node scripts/build-config.js libloader_sources)"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-ldl"]
    }
  ]
}
