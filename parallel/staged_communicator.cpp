#include "parallel/staged_communicator.h"

#include <cstddef>
#include <cstring>
#include <vector>

#include "layers/cpu/bf16.h"
#include "layers/device_ops.h"

namespace tr {

namespace {

// One buffer of a collective, copied to the host as the host communicator takes it: its own
// elements, except bf16, which travels as fp32 where it is summed (MPI has no bf16 arithmetic;
// rounded once on the way back) and as its bytes where it is only moved.
class HostCopy {
 public:
  HostCopy(const StagingMemory& memory, std::int64_t count, DType dtype, bool summed)
      : memory_(memory),
        count_(count),
        dtype_(dtype),
        widened_(summed && dtype == DType::bf16),
        raw_(static_cast<std::size_t>(count) * dtype_size(dtype)) {
    if (widened_) wide_.resize(static_cast<std::size_t>(count));
  }

  void load(const void* from) {
    if (!raw_.empty()) memory_.copy(raw_.data(), from, raw_.size());
    if (widened_) cpu::bf16_to_f32(wide_.data(), bits(), count_);
  }

  void store(void* to) {
    if (widened_) cpu::f32_to_bf16(bits(), wide_.data(), count_);
    if (!raw_.empty()) memory_.copy(to, raw_.data(), raw_.size());
  }

  void* data() { return widened_ ? static_cast<void*>(wide_.data()) : raw_.data(); }
  DType type() const {
    if (widened_) return DType::f32;
    return dtype_ == DType::bf16 ? DType::u8 : dtype_;
  }
  std::int64_t count() const { return dtype_ == DType::bf16 && !widened_ ? 2 * count_ : count_; }

 private:
  std::uint16_t* bits() { return reinterpret_cast<std::uint16_t*>(raw_.data()); }

  StagingMemory memory_;  // a copy: a request's host copy may outlive its communicator
  std::int64_t count_;
  DType dtype_;
  bool widened_;
  std::vector<std::byte> raw_;  // the buffer's bytes as stored
  std::vector<float> wide_;     // bf16 widened, where summed
};

// An asynchronous all-reduce of a staged buffer: the host copy is reduced on the host
// communicator's worker; wait() copies the sum back to the caller's buffer.
class StagedRequest final : public CommRequest {
 public:
  StagedRequest(std::unique_ptr<CommRequest> reduce, std::unique_ptr<HostCopy> copy, void* to)
      : reduce_(std::move(reduce)), copy_(std::move(copy)), to_(to) {}
  // The worker may still be writing into the host copy: it must finish before the copy goes.
  ~StagedRequest() override {
    if (!stored_) reduce_->wait();
  }
  void wait() override {
    if (stored_) return;
    reduce_->wait();
    copy_->store(to_);
    stored_ = true;
  }
  bool test() override { return stored_ || reduce_->test(); }

 private:
  std::unique_ptr<CommRequest> reduce_;
  std::unique_ptr<HostCopy> copy_;
  void* to_;
  bool stored_ = false;
};

class StagedCommunicator final : public Communicator {
 public:
  StagedCommunicator(Communicator& host, StagingMemory memory)
      : host_(host), memory_(std::move(memory)) {}

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string name() const override { return host_.name(); }

  void all_reduce(void* data, std::int64_t count, DType dtype, ReduceOp op) override {
    if (host_takes(data, dtype)) return host_.all_reduce(data, count, dtype, op);
    HostCopy copy(memory_, count, dtype, true);
    copy.load(data);
    host_.all_reduce(copy.data(), copy.count(), copy.type(), op);
    copy.store(data);
  }

  std::unique_ptr<CommRequest> all_reduce_async(void* data, std::int64_t count, DType dtype,
                                                ReduceOp op) override {
    if (host_takes(data, dtype)) return host_.all_reduce_async(data, count, dtype, op);
    auto copy = std::make_unique<HostCopy>(memory_, count, dtype, true);
    copy->load(data);
    auto reduce = host_.all_reduce_async(copy->data(), copy->count(), copy->type(), op);
    return std::make_unique<StagedRequest>(std::move(reduce), std::move(copy), data);
  }

  void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                      ReduceOp op) override {
    if (host_takes(send, dtype) && host_takes(recv, dtype))
      return host_.reduce_scatter(send, recv, count, dtype, op);
    HostCopy all(memory_, count * size(), dtype, true), mine(memory_, count, dtype, true);
    all.load(send);
    host_.reduce_scatter(all.data(), mine.data(), mine.count(), mine.type(), op);
    mine.store(recv);
  }

  void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) override {
    if (host_takes(send, dtype) && host_takes(recv, dtype))
      return host_.all_gather(send, recv, count, dtype);
    HostCopy mine(memory_, count, dtype, false), all(memory_, count * size(), dtype, false);
    mine.load(send);
    host_.all_gather(mine.data(), all.data(), mine.count(), mine.type());
    all.store(recv);
  }

  void broadcast(void* data, std::int64_t count, DType dtype, int root) override {
    if (host_takes(data, dtype)) return host_.broadcast(data, count, dtype, root);
    HostCopy copy(memory_, count, dtype, false);
    if (rank() == root) copy.load(data);
    host_.broadcast(copy.data(), copy.count(), copy.type(), root);
    copy.store(data);
  }

  void barrier() override { host_.barrier(); }

 private:
  // Host memory the host communicator can reduce as it is: no copy needed.
  bool host_takes(const void* p, DType dtype) const {
    return dtype != DType::bf16 && !memory_.is_device(p);
  }

  Communicator& host_;
  StagingMemory memory_;
};

}  // namespace

StagingMemory device_staging_memory() {
  return {is_device_memory, copy_any_memory};
}

std::unique_ptr<Communicator> make_staged_communicator(Communicator& host, StagingMemory memory) {
  return std::make_unique<StagedCommunicator>(host, std::move(memory));
}

}  // namespace tr
