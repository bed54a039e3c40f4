// Runs engine work with libtorch's errors turned into EngineError, so that every failure reaches
// JavaScript with a code and a short message (a c10::Error carries a C++ backtrace that means
// nothing to a JS user).
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <string>

#include "engine/types.h"

namespace hdlm {

// Runs `fn`; an EngineError passes through, any other error becomes EngineError(code,
// "<context>: <message>").
template <typename F>
auto guarded(const std::string& code, const std::string& context, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const EngineError&) {
    throw;
  } catch (const c10::Error& e) {
    throw EngineError(code, context + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw EngineError(code, context + ": " + e.what());
  }
}

}  // namespace hdlm
