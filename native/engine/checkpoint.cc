// Reads the tensors of a safetensors file at the offsets lib/checkpoint.ts located, with
// pread, into float32 CPU tensors.
#include "engine/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hdlm {
namespace {

struct File {
  int fd = -1;
  ~File() {
    if (fd >= 0) ::close(fd);
  }
};

at::ScalarType scalar_type_of(const TensorEntry& e, const std::string& path) {
  if (e.dtype == "F32") return at::kFloat;
  if (e.dtype == "BF16") return at::kBFloat16;
  if (e.dtype == "F16") return at::kHalf;
  throw EngineError("HDLM_BAD_FILE", path + ": tensor '" + e.name + "' has unsupported dtype " + e.dtype);
}

void read_exact(int fd, void* dst, uint64_t size, uint64_t offset, const std::string& path, const std::string& name) {
  auto* out = static_cast<char*>(dst);
  while (size > 0) {
    ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw EngineError("HDLM_BAD_FILE", path + ": could not read tensor '" + name + "' (" +
                                             (n < 0 ? std::strerror(errno) : "unexpected end of file") + ")");
    }
    out += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

}  // namespace

std::unordered_map<std::string, at::Tensor> read_safetensors(const std::string& path, uint64_t expected_size,
                                                             const std::vector<TensorEntry>& entries) {
  File file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) throw EngineError("HDLM_BAD_FILE", path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st;
  if (::fstat(file.fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw EngineError("HDLM_BAD_FILE", path + ": not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size != expected_size) {
    throw EngineError("HDLM_BAD_FILE", path + ": file changed while loading (size " + std::to_string(file_size) +
                                           ", expected " + std::to_string(expected_size) + ")");
  }

  std::unordered_map<std::string, at::Tensor> out;
  for (const auto& e : entries) {
    const auto type = scalar_type_of(e, path);
    uint64_t numel = 1;
    for (auto d : e.shape) {
      if (d < 0) throw EngineError("HDLM_BAD_FILE", path + ": tensor '" + e.name + "' has a negative dimension");
      if (d != 0 && numel > (UINT64_MAX / 8) / static_cast<uint64_t>(d)) {
        throw EngineError("HDLM_BAD_FILE", path + ": tensor '" + e.name + "' is impossibly large");
      }
      numel *= static_cast<uint64_t>(d);
    }
    const uint64_t bytes = numel * at::elementSize(type);
    if (e.begin > e.end || e.end > file_size || e.end - e.begin != bytes) {
      throw EngineError("HDLM_BAD_FILE",
                        path + ": tensor '" + e.name + "' has data offsets outside the file or of the wrong length");
    }
    auto t = at::empty(e.shape, at::TensorOptions().dtype(type));
    if (bytes > 0) read_exact(file.fd, t.data_ptr(), bytes, e.begin, path, e.name);
    out.emplace(e.name, type == at::kFloat ? t : t.to(at::kFloat));
  }
  return out;
}

}  // namespace hdlm
