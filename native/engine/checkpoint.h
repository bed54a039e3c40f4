// Reads tensors out of a safetensors file whose header lib/checkpoint.ts already parsed.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "engine/types.h"

namespace hdlm {

// Reads every entry as float32 on the CPU. Every offset is checked against the size of the
// file actually opened (it may have changed since the header was parsed).
std::unordered_map<std::string, at::Tensor> read_safetensors(const std::string& path, uint64_t expected_size,
                                                             const std::vector<TensorEntry>& entries);

}  // namespace hdlm
