#include "parallel/mpi_communicator.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace tr {

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    case DType::bf16: break;
  }
  throw InternalError("MPI: no datatype for bf16 host buffers");
}

namespace {

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::sum ? MPI_SUM : MPI_MAX;
}

using Clock = std::chrono::steady_clock;

// Completion shared between the worker thread and a request's owner.
struct Completion {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
};

class WorkerRequest final : public CommRequest {
 public:
  explicit WorkerRequest(std::shared_ptr<Completion> c) : completion_(std::move(c)) {}
  void wait() override {
    std::unique_lock<std::mutex> lock(completion_->mutex);
    completion_->done_cv.wait(lock, [&] { return completion_->done; });
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(completion_->mutex);
    return completion_->done;
  }

 private:
  std::shared_ptr<Completion> completion_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, double watchdog_seconds)
      : name_(std::move(name)), watchdog_seconds_(watchdog_seconds) {
    MPI_Comm_dup(comm, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }

  void all_reduce(void* data, std::int64_t count, DType dtype, ReduceOp op) override {
    MPI_Request request;
    MPI_Iallreduce(MPI_IN_PLACE, data, checked(count), mpi_datatype(dtype), mpi_op(op), comm_,
                   &request);
    complete(request, "all_reduce");
  }

  std::unique_ptr<CommRequest> all_reduce_async(void* data, std::int64_t count, DType dtype,
                                                ReduceOp op) override {
    auto completion = std::make_shared<Completion>();
    submit([this, data, count, dtype, op, completion] {
      all_reduce(data, count, dtype, op);
      std::lock_guard<std::mutex> lock(completion->mutex);
      completion->done = true;
      completion->done_cv.notify_all();
    });
    return std::make_unique<WorkerRequest>(completion);
  }

  void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                      ReduceOp op) override {
    MPI_Request request;
    MPI_Ireduce_scatter_block(send, recv, checked(count), mpi_datatype(dtype), mpi_op(op), comm_,
                              &request);
    complete(request, "reduce_scatter");
  }

  void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) override {
    MPI_Request request;
    MPI_Iallgather(send, checked(count), mpi_datatype(dtype), recv, checked(count),
                   mpi_datatype(dtype), comm_, &request);
    complete(request, "all_gather");
  }

  void broadcast(void* data, std::int64_t count, DType dtype, int root) override {
    MPI_Request request;
    MPI_Ibcast(data, checked(count), mpi_datatype(dtype), root, comm_, &request);
    complete(request, "broadcast");
  }

  void barrier() override {
    MPI_Request request;
    MPI_Ibarrier(comm_, &request);
    complete(request, "barrier");
  }

 private:
  static int checked(std::int64_t count) {
    TR_CHECK(count >= 0 && count <= INT32_MAX,
             "MPI message of " + std::to_string(count) + " elements exceeds the int count limit");
    return static_cast<int>(count);
  }

  // Polls until the request completes, backing off from spinning to short sleeps so that
  // oversubscribed ranks leave the cores to the ones computing. Past the watchdog timeout the
  // job is aborted with a message naming the stuck collective.
  void complete(MPI_Request& request, const char* what) {
    const auto start = Clock::now();
    int done = 0;
    for (int polls = 0;; ++polls) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) return;
      if (polls > 100)
        std::this_thread::sleep_for(std::chrono::microseconds(polls > 1000 ? 500 : 20));
      if (watchdog_seconds_ > 0 && (polls & 255) == 0 &&
          std::chrono::duration<double>(Clock::now() - start).count() > watchdog_seconds_) {
        std::fprintf(stderr,
                     "trainer: rank %d: %s on group '%s' (%d ranks) stuck for more than %.0f s "
                     "(parallel.timeout_s); a peer is dead or hung, aborting the job\n",
                     world_rank_, what, name_.c_str(), size_, watchdog_seconds_);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
    }
  }

  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
      queue_.push_back(std::move(job));
    }
    queue_cv_.notify_one();
  }

  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::string name_;
  double watchdog_seconds_;
  std::thread worker_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, const std::string& name,
                                                    double watchdog_seconds) {
  return std::make_unique<MpiCommunicator>(comm, name, watchdog_seconds);
}

}  // namespace tr
