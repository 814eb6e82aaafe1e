#include "parallel/gpu_placement.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>

#include "layers/error.h"

namespace tr {

namespace {

// The fixed-size record a rank contributes to the gather: world rank, TP group and DP group
// (8 bytes each), then host name, GPU UUID and PCI address as NUL-padded text (host names are
// at most 64 bytes on Linux, UUIDs 40 characters, PCI addresses 13).
constexpr std::size_t kHostBytes = 72, kUuidBytes = 56, kPciBytes = 24;
constexpr std::size_t kNumbersBytes = 3 * 8;
constexpr std::size_t kRecordBytes = kNumbersBytes + kHostBytes + kUuidBytes + kPciBytes;

void put_text(std::uint8_t* at, const std::string& text, std::size_t bytes) {
  std::memcpy(at, text.data(), std::min(text.size(), bytes - 1));
}

std::string get_text(const std::uint8_t* at, std::size_t bytes) {
  const char* s = reinterpret_cast<const char*>(at);
  return std::string(s, strnlen(s, bytes));
}

std::array<std::uint8_t, kRecordBytes> encode(const GpuPlacement& p) {
  std::array<std::uint8_t, kRecordBytes> r{};
  const std::int64_t numbers[3] = {p.world_rank, p.tp_group, p.dp_group};
  std::memcpy(r.data(), numbers, sizeof numbers);
  std::uint8_t* text = r.data() + kNumbersBytes;
  put_text(text, p.host, kHostBytes);
  put_text(text + kHostBytes, p.gpu_uuid, kUuidBytes);
  put_text(text + kHostBytes + kUuidBytes, p.pci_bus_id, kPciBytes);
  return r;
}

GpuPlacement decode(const std::uint8_t* r) {
  std::int64_t numbers[3] = {};
  std::memcpy(numbers, r, sizeof numbers);
  GpuPlacement p;
  p.world_rank = static_cast<int>(numbers[0]);
  p.tp_group = static_cast<int>(numbers[1]);
  p.dp_group = static_cast<int>(numbers[2]);
  const std::uint8_t* text = r + kNumbersBytes;
  p.host = get_text(text, kHostBytes);
  p.gpu_uuid = get_text(text + kHostBytes, kUuidBytes);
  p.pci_bus_id = get_text(text + kHostBytes + kUuidBytes, kPciBytes);
  return p;
}

// The GPU two ranks share, as the problem line names it ("" when they have GPUs of their own).
std::string shared_gpu(const GpuPlacement& a, const GpuPlacement& b) {
  const std::string where = a.host.empty() ? "" : " on " + a.host;
  if (a.gpu_uuid == b.gpu_uuid) return a.gpu_uuid + where;
  // One address on one host: one physical GPU (MIG instances of it have UUIDs of their own).
  // Without a host name the address says nothing (every node has its own bus 0000:3b:00).
  if (!a.host.empty() && a.host == b.host && !a.pci_bus_id.empty() && a.pci_bus_id == b.pci_bus_id)
    return "PCI " + a.pci_bus_id + where + ": " + a.gpu_uuid + " and " + b.gpu_uuid;
  return "";
}

// The first problem among the groups that `group_of` (GpuPlacement::tp_group or dp_group) makes
// of `all`, in the order of their numbers.
std::string first_group_problem(const std::vector<GpuPlacement>& all, int GpuPlacement::*group_of,
                                const std::string& group) {
  std::map<int, std::vector<GpuPlacement>> groups;
  for (const GpuPlacement& p : all) groups[p.*group_of].push_back(p);
  for (const auto& entry : groups) {
    const std::string problem = shared_gpu_problem(entry.second, group);
    if (!problem.empty()) return problem;
  }
  return "";
}

}  // namespace

std::string shared_gpu_problem(const std::vector<GpuPlacement>& ranks, const std::string& group) {
  for (std::size_t a = 0; a < ranks.size(); ++a)
    for (std::size_t b = a + 1; b < ranks.size(); ++b) {
      const std::string gpu = shared_gpu(ranks[a], ranks[b]);
      if (gpu.empty()) continue;
      return "train.device: cuda: ranks " + std::to_string(ranks[a].world_rank) + " and " +
             std::to_string(ranks[b].world_rank) + " of the same " + group +
             " group would share one GPU (" + gpu +
             "), and NCCL needs a GPU of its own for each: start at most as many ranks per node "
             "as it has GPUs, give each rank its own GPU (CUDA_VISIBLE_DEVICES), or set "
             "parallel.gpu_comm: mpi (slow; for smoke tests)";
    }
  return "";
}

void require_distinct_gpus(Communicator& world, const GpuPlacement& mine) {
  const auto record = encode(mine);
  std::vector<std::uint8_t> gathered(kRecordBytes * static_cast<std::size_t>(world.size()));
  world.all_gather(record.data(), gathered.data(), static_cast<std::int64_t>(kRecordBytes),
                   DType::u8);
  std::vector<GpuPlacement> all;
  for (int r = 0; r < world.size(); ++r)
    all.push_back(decode(gathered.data() + kRecordBytes * static_cast<std::size_t>(r)));
  std::string problem = first_group_problem(all, &GpuPlacement::tp_group, "tp");
  if (problem.empty()) problem = first_group_problem(all, &GpuPlacement::dp_group, "dp");
  if (!problem.empty()) throw UserError(problem);
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace tr
