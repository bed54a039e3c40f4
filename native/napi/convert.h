// Conversions between JavaScript values and the engine's plain C++ values, and the JS errors the
// addon throws (an Error with a `code`, as lib/errors.ts expects). Arguments are validated in
// TypeScript (lib/validate.ts); the checks here only keep a direct caller from crashing the
// process, with an HDLM_INVALID_ARGUMENT "native: expected ..." error.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hdlm {

struct EngineError;

namespace js {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);
// The JS error for an engine error: its code and message.
Napi::Error engine_error(Napi::Env env, const EngineError& e);
// Throws HDLM_INVALID_ARGUMENT "native: expected <what>".
[[noreturn]] void throw_type(Napi::Env env, const std::string& what);

Napi::Value get(const Napi::Object& o, const char* key);
double get_number(const Napi::Object& o, const char* key);
int64_t get_int(const Napi::Object& o, const char* key);  // an integral number
std::string get_string(const Napi::Object& o, const char* key);
uint64_t get_seed(const Napi::Object& o);  // o.seed: a bigint in [0, 2^64)

std::vector<int32_t> to_int32_vector(Napi::Env env, const Napi::Value& v, const char* what);
Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t>& data);
Napi::Uint8Array to_uint8_array(Napi::Env env, const std::vector<uint8_t>& data);
Napi::Float32Array to_float32_array(Napi::Env env, const std::vector<float>& data);
Napi::Float64Array to_float64_array(Napi::Env env, const std::vector<double>& data);
Napi::Number to_number(Napi::Env env, int64_t value);

}  // namespace js
}  // namespace hdlm
