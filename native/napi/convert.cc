#include "napi/convert.h"

#include <cstring>

#include "engine/types.h"

namespace hdlm {
namespace js {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  auto err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error engine_error(Napi::Env env, const EngineError& e) { return make_error(env, e.code, e.what()); }

void throw_type(Napi::Env env, const std::string& what) {
  throw make_error(env, "HDLM_INVALID_ARGUMENT", "native: expected " + what);
}

Napi::Value get(const Napi::Object& o, const char* key) { return o.Get(key); }

double get_number(const Napi::Object& o, const char* key) {
  auto v = get(o, key);
  if (!v.IsNumber()) throw_type(o.Env(), std::string("a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

int64_t get_int(const Napi::Object& o, const char* key) {
  const double d = get_number(o, key);
  if (d != static_cast<double>(static_cast<int64_t>(d))) throw_type(o.Env(), std::string("an integer for ") + key);
  return static_cast<int64_t>(d);
}

std::string get_string(const Napi::Object& o, const char* key) {
  auto v = get(o, key);
  if (!v.IsString()) throw_type(o.Env(), std::string("a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

uint64_t get_seed(const Napi::Object& o) {
  auto seed = get(o, "seed");
  if (!seed.IsBigInt()) throw_type(o.Env(), "a bigint seed");
  bool lossless = false;
  const uint64_t value = seed.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_type(o.Env(), "a seed in [0, 2^64)");
  return value;
}

std::vector<int32_t> to_int32_vector(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw_type(env, std::string("an Int32Array for ") + what);
  }
  auto arr = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t>& data) {
  auto arr = Napi::Int32Array::New(env, data.size());
  if (!data.empty()) std::memcpy(arr.Data(), data.data(), data.size() * sizeof(int32_t));
  return arr;
}

Napi::Uint8Array to_uint8_array(Napi::Env env, const std::vector<uint8_t>& data) {
  auto arr = Napi::Uint8Array::New(env, data.size());
  if (!data.empty()) std::memcpy(arr.Data(), data.data(), data.size());
  return arr;
}

Napi::Float32Array to_float32_array(Napi::Env env, const std::vector<float>& data) {
  auto arr = Napi::Float32Array::New(env, data.size());
  if (!data.empty()) std::memcpy(arr.Data(), data.data(), data.size() * sizeof(float));
  return arr;
}

Napi::Float64Array to_float64_array(Napi::Env env, const std::vector<double>& data) {
  auto arr = Napi::Float64Array::New(env, data.size());
  if (!data.empty()) std::memcpy(arr.Data(), data.data(), data.size() * sizeof(double));
  return arr;
}

Napi::Number to_number(Napi::Env env, int64_t value) { return Napi::Number::New(env, static_cast<double>(value)); }

}  // namespace js
}  // namespace hdlm
