// bench/parallel_step: where a distributed training step's time goes, under mpirun.
//
//   mpirun -np N parallel_step vit|encdec [shape options of bench_common.h] [--tp T]
//          [--steps 8] [--warmup 2] [--bucket-mb 25]
//
// The world is T tensor-parallel ranks x N/T data-parallel replicas; every replica trains its
// share (--batch / DP) of the reference shape's global batch. Each step is run twice per
// round, alternating: with DP overlap (bucket all-reduces started during backward through the
// gradient-ready hook, as `trainer train` does) and without (all buckets reduced after
// backward). Per step it times
//   tp comm  : time inside the TP group's collectives (Megatron's all-reduces in forward and
//              backward: on the critical path, so all of it is exposed),
//   dp exposed: time blocked in GradientReducer::finish(), DP communication not hidden,
//   compute  : the rest of the step (forward, backward, clipping, AdamW),
// and reports, from rank 0, the medians (slowest rank per step) and the share of DP all-reduce
// time hidden by overlap:  hidden = 1 - dp exposed(overlap) / dp exposed(no overlap)
// (without overlap every DP all-reduce is exposed, so that is the all-reduce time).
// Prints a human line and one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/bench_common.h"
#include "parallel/gradient_reducer.h"
#include "parallel/runtime.h"
#include "parallel/tensor_parallel_group.h"
#include "trainer/grad_clip.h"
#include "trainer/optimizer.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Forwards to a communicator and adds up the seconds its blocking collectives take.
class TimedCommunicator final : public tr::Communicator {
 public:
  explicit TimedCommunicator(tr::Communicator& inner) : inner_(inner) {}
  double seconds = 0;

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string name() const override { return inner_.name(); }
  void all_reduce(void* data, std::int64_t count, tr::DType dtype, tr::ReduceOp op) override {
    timed([&] { inner_.all_reduce(data, count, dtype, op); });
  }
  std::unique_ptr<tr::CommRequest> all_reduce_async(void* data, std::int64_t count, tr::DType dtype,
                                                    tr::ReduceOp op) override {
    return inner_.all_reduce_async(data, count, dtype, op);
  }
  void reduce_scatter(const void* send, void* recv, std::int64_t count, tr::DType dtype,
                      tr::ReduceOp op) override {
    timed([&] { inner_.reduce_scatter(send, recv, count, dtype, op); });
  }
  void all_gather(const void* send, void* recv, std::int64_t count, tr::DType dtype) override {
    timed([&] { inner_.all_gather(send, recv, count, dtype); });
  }
  void broadcast(void* data, std::int64_t count, tr::DType dtype, int root) override {
    timed([&] { inner_.broadcast(data, count, dtype, root); });
  }
  void barrier() override {
    timed([&] { inner_.barrier(); });
  }

 private:
  template <typename F>
  void timed(F&& f) {
    const auto t0 = Clock::now();
    f();
    seconds += since(t0);
  }
  tr::Communicator& inner_;
};

struct StepTimes {
  double total = 0, exposed = 0, tp = 0;
};

StepTimes timed_step(tr::Model& model, tr::Optimizer& opt, tr::GradientReducer& reducer,
                     const tr::Batch& batch, std::int64_t step, bool overlap,
                     tr::Communicator& world, tr::Communicator& dp, TimedCommunicator& tp,
                     const tr::ParameterList& norm_params,
                     const tr::SumSquaresReducer& reduce_over_tp) {
  world.barrier();  // every rank starts the step together: waits for stragglers are not comm
  tp.seconds = 0;
  const auto t0 = Clock::now();
  opt.zero_grad();
  reducer.begin_step();
  const tr::ForwardContext ctx{true, 1, static_cast<std::uint64_t>(step + 1), 0};
  model.forward(batch, ctx);
  if (overlap)
    model.set_gradient_ready_hook([&reducer](tr::Parameter* p) { reducer.mark_ready(p); });
  model.backward(1.0 / static_cast<double>(model.counted_targets() * dp.size()));
  model.set_gradient_ready_hook(nullptr);
  if (!overlap)
    for (tr::Parameter* p : model.parameters()) reducer.mark_ready(p);
  const auto t1 = Clock::now();
  reducer.finish();
  StepTimes t;
  t.exposed = since(t1);
  tr::clip_grad_norm_split(model.parameters(), norm_params, 1.0, reduce_over_tp);
  opt.step(1e-4);
  t.total = since(t0);
  t.tp = tp.seconds;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tr::bench;
  tr::ParallelRuntime runtime(&argc, &argv);
  if (argc < 2 || (std::strcmp(argv[1], "vit") != 0 && std::strcmp(argv[1], "encdec") != 0)) {
    std::fprintf(stderr, "usage: mpirun -np N parallel_step vit|encdec [options]\n");
    return 2;
  }
  const int tp_size = static_cast<int>(arg_int(argc, argv, "--tp", 1));
  runtime.setup_grid(tp_size, runtime.world_size() / tp_size, 300);
  tr::Communicator& dp = runtime.dp();
  TimedCommunicator tp(runtime.tp());
  const std::unique_ptr<tr::TensorParallel> tp_group = tr::make_tensor_parallel(tp);
  const std::int64_t steps = arg_int(argc, argv, "--steps", 8);
  const std::int64_t warmup = arg_int(argc, argv, "--warmup", 2);
  const double bucket_mb = arg_double(argc, argv, "--bucket-mb", 25);
  tr::Batch batch;
  const tr::ModelConfig c = reference_model(argc, argv, dp.size(), batch);
  tr::validate_model_config(c);
  auto model = tr::make_model(c, tr::DType::f32, 0.1, 1, tp_group.get());
  const tr::ParameterList norm_params =
      tr::tensor_parallel_norm_share(model->parameters(), runtime.grid().tp_rank);
  tr::SumSquaresReducer reduce_over_tp;
  if (tp_size > 1) reduce_over_tp = [&tp](double s) { return tp.all_reduce_scalar(s); };
  tr::AdamW opt(model->parameters(), tr::AdamWConfig{0.9, 0.999, 1e-8, 0.05});
  tr::GradientReducer reducer(model->parameters(), dp, bucket_mb, true);

  std::vector<double> total[2], exposed[2], tp_comm[2];
  for (std::int64_t s = 0; s < warmup + steps; ++s) {
    for (int overlap = 0; overlap < 2; ++overlap) {
      const StepTimes t = timed_step(*model, opt, reducer, batch, s, overlap == 1, runtime.world(),
                                     dp, tp, norm_params, reduce_over_tp);
      if (s < warmup) continue;
      // The slowest rank's times: the step is as long as its slowest rank.
      double v[3] = {t.total, t.exposed, t.tp};
      runtime.world().all_reduce(v, 3, tr::DType::f64, tr::ReduceOp::max);
      total[overlap].push_back(v[0]);
      exposed[overlap].push_back(v[1]);
      tp_comm[overlap].push_back(v[2]);
    }
  }
  if (runtime.world_rank() != 0) return 0;
  const double t_off = median(total[0]), e_off = median(exposed[0]), tp_off = median(tp_comm[0]);
  const double t_on = median(total[1]), e_on = median(exposed[1]), tp_on = median(tp_comm[1]);
  const double hidden = e_off > 0 ? std::max(0.0, 1.0 - e_on / e_off) : 0.0;
  std::printf(
      "%s TP=%d DP=%d buckets=%zu | overlap off: step %.3f s = compute %.3f + tp comm %.3f + dp "
      "exposed %.3f | overlap on: step %.3f s = compute %.3f + tp comm %.3f + dp exposed %.3f | "
      "DP all-reduce hidden by overlap %.0f%%\n",
      argv[1], tp_size, dp.size(), reducer.bucket_count(), t_off, t_off - tp_off - e_off, tp_off,
      e_off, t_on, t_on - tp_on - e_on, tp_on, e_on, 100 * hidden);
  std::printf(
      "{\"model\": \"%s\", \"tp\": %d, \"dp\": %d, \"buckets\": %zu, \"step_off_s\": %.4f, "
      "\"tp_comm_off_s\": %.4f, \"dp_exposed_off_s\": %.4f, \"step_on_s\": %.4f, "
      "\"tp_comm_on_s\": %.4f, \"dp_exposed_on_s\": %.4f, \"hidden\": %.3f}\n",
      argv[1], tp_size, dp.size(), reducer.bucket_count(), t_off, tp_off, e_off, t_on, tp_on, e_on,
      hidden);
  return 0;
}
