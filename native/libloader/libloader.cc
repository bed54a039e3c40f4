// hdlm_libloader.node: opens shared libraries by full path with RTLD_NOW | RTLD_GLOBAL, before the
// main addon is loaded. The main addon's DT_NEEDED entries (libtorch_cpu.so, libc10.so, ...) then
// resolve by SONAME to these already-loaded libraries, wherever that libtorch lives (a pip wheel,
// a conda env, an unpacked zip), without LD_LIBRARY_PATH. Which files to open, and in which
// order, is decided in TypeScript (lib/native/prebuilds.ts); no libtorch headers here.
#include <dlfcn.h>
#include <node_api.h>

#include <vector>

namespace {

// openGlobal(path): null when opened, else dlerror()'s message. The handle is never closed: the
// libraries stay for the life of the process, as the addon that links them does.
napi_value OpenGlobal(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &type) != napi_ok || type != napi_string) {
    napi_throw_type_error(env, nullptr, "openGlobal(path): path must be a string");
    return nullptr;
  }
  size_t length = 0;
  napi_get_value_string_utf8(env, argv[0], nullptr, 0, &length);
  std::vector<char> path(length + 1, '\0');
  napi_get_value_string_utf8(env, argv[0], path.data(), path.size(), &length);
  dlerror();
  void* handle = dlopen(path.data(), RTLD_NOW | RTLD_GLOBAL);
  napi_value result;
  if (handle != nullptr) {
    napi_get_null(env, &result);
  } else {
    const char* message = dlerror();
    napi_create_string_utf8(env, message != nullptr ? message : "dlopen failed", NAPI_AUTO_LENGTH, &result);
  }
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "openGlobal", NAPI_AUTO_LENGTH, OpenGlobal, nullptr, &fn);
  napi_set_named_property(env, exports, "openGlobal", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
