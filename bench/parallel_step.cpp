// bench/parallel_step: where a data-parallel training step's time goes, under mpirun.
//
//   mpirun -np N parallel_step vit|encdec [shape options of bench_common.h] [--steps 8]
//          [--warmup 2] [--bucket-mb 25]
//
// Every rank trains its share (--batch / N) of the reference shape's global batch. Each step is
// run twice per round, alternating: with overlap (bucket all-reduces started during backward
// through the gradient-ready hook, as `trainer train` does) and without (all buckets reduced
// after backward). Per step it times
//   compute  : forward + backward + clipping + AdamW,
//   exposed  : time blocked in GradientReducer::finish(), i.e. communication not hidden,
// and reports, from rank 0, the medians and the share of all-reduce time hidden by overlap:
//   hidden = 1 - exposed(overlap) / exposed(no overlap)
// (without overlap every all-reduce is exposed, so its exposed time is the all-reduce time).
// Prints a human line and one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/bench_common.h"
#include "parallel/gradient_reducer.h"
#include "parallel/runtime.h"
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

struct StepTimes {
  double total = 0, exposed = 0;
};

StepTimes timed_step(tr::Model& model, tr::Optimizer& opt, tr::GradientReducer& reducer,
                     const tr::Batch& batch, std::int64_t step, bool overlap,
                     tr::Communicator& dp) {
  dp.barrier();  // every rank starts the step together: waits for stragglers are not comm
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
  tr::clip_grad_norm(model.parameters(), 1.0);
  opt.step(1e-4);
  t.total = since(t0);
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
  runtime.setup_grid(1, runtime.world_size(), 300);
  tr::Communicator& dp = runtime.dp();
  const std::int64_t steps = arg_int(argc, argv, "--steps", 8);
  const std::int64_t warmup = arg_int(argc, argv, "--warmup", 2);
  const double bucket_mb = arg_double(argc, argv, "--bucket-mb", 25);
  tr::Batch batch;
  const tr::ModelConfig c = reference_model(argc, argv, dp.size(), batch);
  tr::validate_model_config(c);
  auto model = tr::make_model(c, tr::DType::f32, 0.1, 1);
  tr::AdamW opt(model->parameters(), tr::AdamWConfig{0.9, 0.999, 1e-8, 0.05});
  tr::GradientReducer reducer(model->parameters(), dp, bucket_mb, true);

  std::vector<double> total[2], exposed[2];
  for (std::int64_t s = 0; s < warmup + steps; ++s) {
    for (int overlap = 0; overlap < 2; ++overlap) {
      const StepTimes t = timed_step(*model, opt, reducer, batch, s, overlap == 1, dp);
      if (s < warmup) continue;
      // The slowest rank's times: the step is as long as its slowest rank.
      double v[2] = {t.total, t.exposed};
      dp.all_reduce(v, 2, tr::DType::f64, tr::ReduceOp::max);
      total[overlap].push_back(v[0]);
      exposed[overlap].push_back(v[1]);
    }
  }
  if (runtime.world_rank() != 0) return 0;
  const double t_off = median(total[0]), e_off = median(exposed[0]);
  const double t_on = median(total[1]), e_on = median(exposed[1]);
  const double hidden = e_off > 0 ? std::max(0.0, 1.0 - e_on / e_off) : 0.0;
  std::printf(
      "%s DP=%d buckets=%zu: overlap off: step %.3f s (compute %.3f, exposed all-reduce %.3f) | "
      "overlap on: step %.3f s (compute %.3f, exposed %.3f) | hidden by overlap %.0f%%\n",
      argv[1], dp.size(), reducer.bucket_count(), t_off, t_off - e_off, e_off, t_on, t_on - e_on,
      e_on, 100 * hidden);
  std::printf(
      "{\"model\": \"%s\", \"tp\": 1, \"dp\": %d, \"buckets\": %zu, \"step_off_s\": %.4f, "
      "\"exposed_off_s\": %.4f, \"step_on_s\": %.4f, \"exposed_on_s\": %.4f, \"hidden\": %.3f}\n",
      argv[1], dp.size(), reducer.bucket_count(), t_off, e_off, t_on, e_on, hidden);
  return 0;
}
