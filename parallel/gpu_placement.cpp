#include "parallel/gpu_placement.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "layers/error.h"

namespace tr {

namespace {

// The fixed-size record a rank contributes to the gather: its world rank, then host name and
// GPU UUID as NUL-padded text (host names are at most 64 bytes on Linux; UUIDs are 40 chars).
constexpr std::size_t kHostBytes = 72, kUuidBytes = 56;
constexpr std::size_t kRecordBytes = 8 + kHostBytes + kUuidBytes;

std::array<std::uint8_t, kRecordBytes> encode(const GpuPlacement& p) {
  std::array<std::uint8_t, kRecordBytes> r{};
  const std::int64_t rank = p.world_rank;
  std::memcpy(r.data(), &rank, sizeof rank);
  std::memcpy(r.data() + 8, p.host.data(), std::min(p.host.size(), kHostBytes - 1));
  std::memcpy(r.data() + 8 + kHostBytes, p.gpu_uuid.data(),
              std::min(p.gpu_uuid.size(), kUuidBytes - 1));
  return r;
}

GpuPlacement decode(const std::uint8_t* r) {
  GpuPlacement p;
  std::int64_t rank = 0;
  std::memcpy(&rank, r, sizeof rank);
  p.world_rank = static_cast<int>(rank);
  const auto text = [](const std::uint8_t* at, std::size_t bytes) {
    const char* s = reinterpret_cast<const char*>(at);
    return std::string(s, strnlen(s, bytes));
  };
  p.host = text(r + 8, kHostBytes);
  p.gpu_uuid = text(r + 8 + kHostBytes, kUuidBytes);
  return p;
}

}  // namespace

std::string shared_gpu_problem(const std::vector<GpuPlacement>& ranks, const std::string& group) {
  for (std::size_t a = 0; a < ranks.size(); ++a)
    for (std::size_t b = a + 1; b < ranks.size(); ++b) {
      if (ranks[a].gpu_uuid != ranks[b].gpu_uuid) continue;
      const std::string where = ranks[a].host.empty() ? "" : " on " + ranks[a].host;
      return "train.device: cuda: ranks " + std::to_string(ranks[a].world_rank) + " and " +
             std::to_string(ranks[b].world_rank) + " of the same " + group +
             " group would share one GPU (" + ranks[a].gpu_uuid + where +
             "), and NCCL needs a GPU of its own for each: start at most as many ranks per node "
             "as it has GPUs, or give each rank its own GPU (CUDA_VISIBLE_DEVICES)";
    }
  return "";
}

void require_distinct_gpus(Communicator& group, const GpuPlacement& mine) {
  const auto record = encode(mine);
  std::vector<std::uint8_t> all(kRecordBytes * static_cast<std::size_t>(group.size()));
  group.all_gather(record.data(), all.data(), static_cast<std::int64_t>(kRecordBytes), DType::u8);
  std::vector<GpuPlacement> ranks;
  for (int r = 0; r < group.size(); ++r)
    ranks.push_back(decode(all.data() + kRecordBytes * static_cast<std::size_t>(r)));
  // Every rank gathered the same records, so every rank reaches the same verdict: all throw
  // together, and none waits in a collective for one that left.
  const std::string problem = shared_gpu_problem(ranks, group.name());
  if (!problem.empty()) throw UserError(problem);
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace tr
