// Errors raised by native code. Every failure carries a stable code (E_SHAPE, E_DTYPE, …) that the N-API layer
// hands to JavaScript, where lib/errors.ts turns it into an NmSparseError.
#pragma once
#include <stdexcept>
#include <string>

namespace nms {

struct Error : std::runtime_error {
  std::string code;
  Error(std::string c, const std::string& message) : std::runtime_error(message), code(std::move(c)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& message) { throw Error(code, message); }

}  // namespace nms
