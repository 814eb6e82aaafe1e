#include "trainer/training.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "data/h5.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "layers/device.h"
#include "layers/ops.h"
#include "models/model.h"
#include "parallel/gradient_reducer.h"
#include "parallel/runtime.h"
#include "parallel/tensor_parallel_group.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/device_peak.h"
#include "trainer/device_residency.h"
#include "trainer/evaluation.h"
#include "trainer/grad_clip.h"
#include "trainer/metrics_log.h"
#include "trainer/model_config_yaml.h"
#include "trainer/progress.h"
#include "trainer/sharded_adamw.h"
#include "trainer/stop_signals.h"
#include "trainer/weights_file.h"

namespace tr {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The most memory this rank's tensors on the training device have held at once since start
// (parameters, gradients, optimizer state, activations; on a GPU plus the ops' scratch: like
// torch.cuda.max_memory_allocated), in MiB.
double peak_memory_mb(Device device) {
  return static_cast<double>(peak_memory_bytes(device)) / (1024.0 * 1024.0);
}

// One line: the model, the steps, the device (a GPU's name), the ranks and their layout, the
// precision.
std::string run_summary(const RunConfig& c, std::int64_t total, Device device, int world,
                        const ProcessGrid& grid) {
  const ModelConfig& m = c.model;
  std::string layers = std::to_string(m.encoder_layers);
  if (m.type == "encoder_decoder") layers += "+" + std::to_string(m.decoder_layers);
  std::string text = m.type + " (d_model " + std::to_string(m.d_model) + ", " + layers +
                     " layers): " + std::to_string(total) + " steps of " +
                     std::to_string(c.train.global_batch) + " samples on ";
  text += device == Device::cuda ? current_cuda_device_name() : std::string("the CPU");
  text += world == 1 ? ", 1 process" : ", " + std::to_string(world) + " ranks";
  if (grid.tp_size > 1 || grid.dp_size > 1)
    text += " (TP " + std::to_string(grid.tp_size) + " x DP " + std::to_string(grid.dp_size) + ")";
  text += ", " + c.train.precision;
  return text;
}

std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, const ParameterList& params) {
  if (c.train.optimizer.type == "sgd")
    return std::make_unique<SGD>(params, c.train.optimizer.sgd());
  return std::make_unique<AdamW>(params, c.train.optimizer.adamw());
}

// Which checkpoint to continue from ("" = a fresh start), decided before anything is written.
std::string resolve_resume(const RunConfig& c, const std::string& mode, bool overwrite) {
  const fs::path run_dir = c.run.dir;
  if (overwrite && mode != "never")
    throw UserError("--overwrite replaces the run in run.dir and applies to --resume never only");
  if (mode == "auto") {
    std::string warning;
    std::string found = find_latest_checkpoint(run_dir.string(), &warning);
    if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
    return found;
  }
  if (mode == "never") {
    if (!overwrite &&
        (fs::exists(run_dir / "checkpoints") || fs::exists(run_dir / "metrics.jsonl")))
      throw UserError("run.dir: " + run_dir.string() +
                      " already holds a run; continue it with --resume auto, replace it with "
                      "--overwrite, or choose another run.dir");
    return "";
  }
  read_checkpoint_meta(mode);  // verifies it is a complete, intact checkpoint
  return mode;
}

LoaderOptions train_loader_options(const RunConfig& c, int dp_rank, int dp_size) {
  LoaderOptions lo;
  lo.path = c.data.train;
  lo.shuffle = c.data.shuffle;
  lo.seed = c.run.seed;
  lo.batching = c.data.batching;
  lo.global_batch = c.train.global_batch;
  lo.micro_batch = micro_batch_size(c, dp_size);
  lo.max_tokens = c.data.max_tokens;
  lo.accumulation = accumulation_steps(c, dp_size);
  lo.dp_rank = dp_rank;
  lo.dp_size = dp_size;
  lo.prefetch = static_cast<int>(c.data.prefetch);
  lo.max_len = c.model.type == "encoder_decoder" ? c.model.max_len : 0;
  lo.drop_last = true;  // the training stream: epochs wrap, partial final steps are skipped
  lo.augment = ImageAugment{c.data.augment_flip, c.data.augment_shift, c.run.seed};
  return lo;
}

// Readies the run directory on rank 0 before the first step: a checkpoint directory that cannot
// be written is found now, not at the first save after hours of training. A fresh start with
// --overwrite removes the old run's checkpoints and metrics; a resumed one drops what the run
// it continues left after its checkpoint (interrupted saves, later checkpoints and metrics
// rows), so that the run goes on as if never stopped.
void prepare_run_dir(const fs::path& run_dir, std::int64_t resume_step, bool overwrite) {
  const fs::path checkpoints = run_dir / "checkpoints";
  std::error_code ec;
  if (overwrite) {
    fs::remove_all(checkpoints, ec);
    fs::remove(run_dir / "metrics.jsonl", ec);
  }
  fs::create_directories(checkpoints, ec);
  if (ec || !fs::is_directory(checkpoints))
    throw UserError(checkpoints.string() + ": cannot create the checkpoint directory (" +
                    (ec ? ec.message() : std::string("a file is in the way")) + ")");
  const fs::path probe = checkpoints / ".write_test";
  if (!std::ofstream(probe).put('\n').flush())
    throw UserError(checkpoints.string() + ": the checkpoint directory is not writable");
  fs::remove(probe, ec);
  for (const std::string& name : tidy_checkpoints(run_dir.string(), resume_step))
    std::fprintf(stderr, "checkpoint %s is newer than the one resumed: renamed to %s.discarded\n",
                 name.c_str(), name.c_str());
  truncate_metrics((run_dir / "metrics.jsonl").string(), resume_step);
}

// A collective that has not completed after this long means a peer died or hung.
constexpr double kCollectiveTimeoutSeconds = 300;

struct RunState {
  std::int64_t step = 0;  // last completed step
  std::int64_t samples = 0;
  std::int64_t bad_in_row = 0;
  std::int64_t skipped = 0;
};

}  // namespace

int run_training(const TrainArgs& args, ParallelRuntime& runtime) {
  // ---- everything the user gave, checked before anything is written ----
  // From the start: a stop requested while loading is honoured after the first step.
  install_stop_signals();
  RunConfig config = load_run_config(args.config_path, args.overrides);
  const std::string resume_mode = args.resume.empty() ? config.checkpoint.resume : args.resume;
  const int dp_size = data_parallel_size(config, runtime.world_size());
  runtime.setup_grid(static_cast<int>(config.parallel.tensor), dp_size, kCollectiveTimeoutSeconds);
  const ProcessGrid& grid = runtime.grid();
  const int rank = grid.world_rank, dp_rank = grid.dp_rank, tp_rank = grid.tp_rank;
  Communicator& dp = runtime.dp();
  Communicator& tp = runtime.tp();
  // On CUDA the model's tensors (TP all-reduces, DP buckets, ZeRO-1) go over the groups'
  // device communicators (NCCL, or staged through MPI: parallel.gpu_comm); host values (counts, the
  // loss, norms) stay on dp/tp.
  const Device device = resolve_training_device(config);
  // train.precision and train.attention_dropout are process-wide (layers/device.h, layers/ops.h):
  // fp32 and exact again when this run ends, however it ends, so that what the process does next
  // (tests run several commands) starts clean.
  struct ProcessSettingsReset {
    ~ProcessSettingsReset() {
      set_training_precision(MatmulPrecision::fp32, Device::cpu);
      ops::set_fused_attention_dropout(false);
    }
  } process_settings_reset;
  ops::set_fused_attention_dropout(config.train.attention_dropout == "fused");
  // The schema admits the three names only.
  const Recompute recompute = recompute_from_name(config.train.recompute).value();
  if (device == Device::cuda) {
    runtime.select_device();
    require_usable_cuda_device(config);  // before NCCL: a GPU this build cannot run ends here
    runtime.setup_device_groups(device_transport_from_name(config.parallel.gpu_comm));
  }
  Communicator& dp_tensors = device == Device::cuda ? runtime.dp_device() : dp;
  Communicator& tp_tensors = device == Device::cuda ? runtime.tp_device() : tp;
  const DatasetInfo train_info = read_dataset_info(config.data.train);
  std::optional<DatasetInfo> valid_info;
  if (!config.data.valid.empty()) valid_info = read_dataset_info(config.data.valid);
  check_config_against_data(config, train_info, valid_info ? &*valid_info : nullptr);
  const std::int64_t total = total_steps(config, train_info.records);
  config.train.schedule.total_steps = total;
  validate_schedule(config.train.schedule);
  const LoaderOptions loader_options = train_loader_options(config, dp_rank, dp_size);
  const std::string resume_from = resolve_resume(config, resume_mode, args.overwrite);
  std::optional<CheckpointMeta> meta;
  if (!resume_from.empty()) {
    meta = read_checkpoint_meta(resume_from);
    check_config_against_weights(config, meta->model_yaml, resume_from);
  } else if (!config.model.init.empty()) {
    // Only a fresh start reads model.init; a resumed run takes its weights from the checkpoint,
    // whose model section the config is checked against instead.
    h5::File init = h5::File::open(config.model.init);
    check_config_against_weights(config, init.read_attr_string("/", "config"), config.model.init);
  }
  const bool translation = config.model.type == "encoder_decoder";
  std::optional<Tokenizer> tokenizer;
  if (translation && valid_info && valid_info->has_tokenizer)
    tokenizer = Tokenizer::load(config.data.valid);
  Loader loader(loader_options);  // validates the training file's records as it reads

  // The model and its starting weights, and the first step's data: a weights file that does
  // not fit, or a bad record among the first step's, ends the run before anything is written.
  // (Records are validated as they are read, so a bad one further on ends the run later, still
  // with exit 2 naming the file and record.)
  // Tensor parallelism: this rank builds its shard of the model (models/model.h); the TP
  // ranks of a replica see the same data and run every step together.
  const std::unique_ptr<TensorParallel> tp_group = make_tensor_parallel(tp_tensors);
  auto model = make_model(config.model, DType::f32, config.train.label_smoothing, config.run.seed,
                          tp_group.get());
  const ParameterList& params = model->parameters();
  // The global gradient norm counts every element once: shards summed over TP, replicated
  // parameters from TP rank 0 (grad_clip.h).
  const ParameterList norm_params = tensor_parallel_norm_share(params, tp_rank);
  SumSquaresReducer reduce_over_tp;
  if (grid.tp_size > 1) reduce_over_tp = [&tp](double s) { return tp.all_reduce_scalar(s); };
  // ZeRO-1 keeps the AdamW state sharded over the DP ranks (trainer/sharded_adamw.h);
  // otherwise every replica holds the whole optimizer.
  const bool zero = config.parallel.zero == 1;
  if (zero && config.train.optimizer.type != "adamw")
    throw UserError("parallel.zero: 1 shards AdamW state, but train.optimizer.type is " +
                    config.train.optimizer.type);
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<ShardedAdamW> sharded;
  if (zero)
    sharded = std::make_unique<ShardedAdamW>(params, config.train.optimizer.adamw(), dp_tensors,
                                             &tp_tensors);
  else
    optimizer = make_optimizer(config, params);
  RunState state;
  if (meta) {
    // Whatever layout wrote it: each rank keeps its part (checkpoint.h).
    load_checkpoint(resume_from, params, optimizer.get());
    if (sharded) load_optimizer_shard(resume_from, *sharded);
    loader.restore(meta->loader);
    state.step = meta->step;
    state.samples = meta->samples;
    state.bad_in_row = meta->bad_steps_in_row;
    state.skipped = meta->skipped_steps;
  } else if (!config.model.init.empty()) {
    read_weights(config.model.init, params);
  }
  // Built and loaded on the host (checkpoint and weights readers are host code), then moved.
  const TrainingState training_state{model.get(), optimizer.get(), sharded.get()};
  training_state.to_device(device);
  Batch device_batch;  // the micro-batch being trained on, on `device` (CUDA)
  StepBatches step_batches;
  bool have_batches = false;  // step_batches holds the next step's data, not yet trained on
  const LoaderState before_first = loader.state();
  if (state.step < total) {
    loader.next(step_batches);
    have_batches = true;
  }

  // ---- the run ----
  // Every rank has checked the run directory (--resume never refuses an existing run) before
  // rank 0 writes into it: a slower rank must not find rank 0's fresh files.
  runtime.world().barrier();
  const fs::path run_dir = config.run.dir;
  if (rank == 0) {
    prepare_run_dir(run_dir, state.step, resume_mode == "never" && args.overwrite);
    write_resolved_config(config, (run_dir / "config.yaml").string());
  }
  if (meta && rank == 0)
    std::fprintf(stderr, "resuming from %s (step %lld)\n", resume_from.c_str(),
                 static_cast<long long>(meta->step));

  MetricsLog metrics(rank == 0 ? (run_dir / "metrics.jsonl").string() : "");
  Progress progress(total, config.log.progress, rank == 0 ? stderr : nullptr);
  // What runs where, once: the first thing to check in a cluster job's log.
  progress.message(run_summary(config, total, device, runtime.world_size(), grid));
  GradientReducer reducer(params, dp_tensors, config.parallel.bucket_mb, config.parallel.overlap);
  const std::string config_yaml = run_config_to_yaml(config);  // for meta.yaml
  // Translation checkpoints carry their tokenizer, so `trainer translate` needs nothing else.
  std::map<std::string, std::string> extra_files;
  if (tokenizer) extra_files[kCheckpointTokenizerFile] = tokenizer->bytes();
  std::int64_t last_saved = meta ? meta->step : -1;

  auto save = [&]() {
    const HostResidency on_host(training_state, device);  // the files are written from the host
    CheckpointMeta m;
    m.step = state.step;
    m.samples = state.samples;
    m.loader = have_batches ? before_first : loader.state();
    m.seed = config.run.seed;
    m.optimizer_type = zero ? "adamw" : optimizer->type();
    m.optimizer_steps = zero ? sharded->step_count() : optimizer->step_count();
    m.bad_steps_in_row = state.bad_in_row;
    m.skipped_steps = state.skipped;
    m.data_parallel = dp_size;
    m.tensor_parallel = static_cast<int>(config.parallel.tensor);
    m.zero = static_cast<int>(config.parallel.zero);
    m.model_type = config.model.type;
    m.model_yaml = model_config_to_yaml_text(config.model);
    m.config_yaml = config_yaml;
    // Replicas hold identical parameters (and, without ZeRO, optimizer state): the ranks of
    // DP rank 0 write the model, one file per TP rank, and the optimizer state; with ZeRO
    // every rank writes its shard. Then rank 0 completes the checkpoint. After each part every
    // rank learns whether any failed (a full disk): then all stop together with exit 3, the
    // previous checkpoint intact, instead of training on without checkpoints or waiting for a
    // rank that gave up.
    const std::string tmp = checkpoint_tmp_dir(run_dir.string(), state.step);
    std::string failure;  // this rank's
    auto attempt = [&](auto&& part) {
      try {
        part();
      } catch (const std::exception& e) {
        failure = e.what();
      }
      const bool failed =
          runtime.world().all_reduce_scalar(failure.empty() ? 0.0 : 1.0, ReduceOp::max) > 0;
      if (!failed) return;
      std::error_code ec;
      if (rank == 0) fs::remove_all(tmp, ec);  // never leave half a checkpoint behind
      const std::string kept = find_latest_checkpoint(run_dir.string());
      throw RunFailure(
          "checkpoint of step " + std::to_string(state.step) + " not written: " +
          (failure.empty() ? std::string("another rank failed to write its part") : failure) +
          "; training stopped, " +
          (kept.empty() ? std::string("no earlier checkpoint")
                        : "the previous checkpoint " + kept + " is intact"));
    };
    attempt([&] {
      if (rank == 0) prepare_checkpoint_dir(run_dir.string(), state.step);
    });
    attempt([&] {
      if (dp_rank == 0) write_model_shard(tmp, m, params, tp_rank, grid.tp_size);
      if (zero)
        write_optimizer_shard(tmp, tp_rank, grid.tp_size, dp_rank, *sharded);
      else if (dp_rank == 0)
        write_optimizer_file(tmp, tp_rank, grid.tp_size, *optimizer);
    });
    attempt([&] {
      if (rank != 0) return;
      const std::string dir = finish_checkpoint(
          run_dir.string(), m, static_cast<int>(config.checkpoint.keep), extra_files);
      progress.message("checkpoint " + dir);
    });
    last_saved = state.step;
  };

  auto run_eval = [&]() {
    EvalOptions eo;
    eo.path = config.data.valid;
    eo.batch = loader_options.micro_batch;
    eo.max_batches = config.eval.max_batches;
    eo.beam = static_cast<int>(config.eval.beam);
    eo.tokenizer = tokenizer ? &*tokenizer : nullptr;
    eo.bleu = translation && tokenizer.has_value();
    eo.dp = &dp;
    // On the training device: the model's forward, the argmax and the decoder cache run there
    // (the optimizer state stays where it is).
    const EvalResult r = evaluate(*model, eo);
    nlohmann::json row = {{"step", state.step}, {"eval_loss", r.loss}, {"accuracy", r.accuracy}};
    char text[160];
    const int n = std::snprintf(text, sizeof text, "eval step %lld : loss %.4f : accuracy %.2f%%",
                                static_cast<long long>(state.step), r.loss, 100 * r.accuracy);
    if (r.bleu >= 0) {
      row["bleu"] = r.bleu;
      std::snprintf(text + n, sizeof text - n, " : BLEU %.2f", r.bleu);
    }
    metrics.write(row);
    progress.message(text);
  };

  const auto start = Clock::now();
  auto interval_start = start;
  std::int64_t interval_samples = 0, interval_tokens = 0, last_eval = -1;
  // This rank's share of the FLOPs (a TP rank computes 1/tp of every matrix multiply).
  double interval_flops = 0;
  const double peak_tflops =
      device == Device::cuda ? dense_peak_tflops(current_cuda_device_name(), config.train.precision)
                             : 0.0;
  bool stopping = false;
  while (state.step < total && !stopping) {
    const std::int64_t step = state.step + 1;
    if (!have_batches) loader.next(step_batches);
    have_batches = false;
    // Targets and samples of the whole global batch: every rank scales its loss by the same
    // 1 / targets, so summing gradients over DP gives the single-process step.
    std::int64_t counts[2] = {step_batches.local_targets, step_batches.local_samples};
    dp.all_reduce(counts, 2, DType::i64, ReduceOp::sum);
    const std::int64_t global_targets = counts[0], global_samples = counts[1];
    for (Parameter* p : params) p->grad.zero_();
    reducer.begin_step();
    double loss_sum = 0;
    for (std::size_t j = 0; j < step_batches.micro_batches.size(); ++j) {
      const ForwardContext ctx{true, config.run.seed, static_cast<std::uint64_t>(step),
                               step_batches.micro_batch_first_sample[j], recompute};
      const Batch& host_batch = step_batches.micro_batches[j];
      if (device != Device::cpu) upload_batch(device_batch, host_batch, device);
      loss_sum += model->forward(device != Device::cpu ? device_batch : host_batch, ctx);
      interval_flops += model->train_flops(host_batch) / static_cast<double>(grid.tp_size);
      // The last micro-batch's backward finalises gradients layer by layer: each DP bucket's
      // all-reduce starts as soon as its gradients are final, overlapping the rest.
      if (!zero && j + 1 == step_batches.micro_batches.size())
        model->set_gradient_ready_hook([&reducer](Parameter* p) { reducer.mark_ready(p); });
      model->backward(1.0 / static_cast<double>(global_targets));
      model->set_gradient_ready_hook(nullptr);
    }
    if (!zero) reducer.finish();
    // The loss sum and a stop request travel together: every rank stops after the same step.
    double reduced[2] = {loss_sum, stop_requested() ? 1.0 : 0.0};
    dp.all_reduce(reduced, 2, DType::f64, ReduceOp::sum);
    stopping = runtime.world().all_reduce_scalar(reduced[1], ReduceOp::max) > 0;
    const double loss = reduced[0] / static_cast<double>(global_targets);
    const double lr = learning_rate(config.train.schedule, step);
    double grad_norm = 0;
    bool updated = false;
    if (zero) {  // reduce-scatter, clip on the global norm, update the shard, all-gather
      // The loss is the same on every rank, so all of them skip together.
      if (std::isfinite(loss)) {
        const auto r = sharded->step(lr, config.train.grad_clip);
        grad_norm = r.grad_norm;
        updated = r.updated;
      } else {
        grad_norm = loss;
      }
    } else {
      grad_norm =
          config.train.grad_clip > 0
              ? clip_grad_norm_split(params, norm_params, config.train.grad_clip, reduce_over_tp)
              : global_grad_norm(norm_params, reduce_over_tp);
      if (std::isfinite(loss) && std::isfinite(grad_norm)) {
        optimizer->step(lr);
        updated = true;
      }
    }
    if (updated) {
      state.bad_in_row = 0;
    } else {
      ++state.bad_in_row;
      ++state.skipped;
      progress.message("step " + std::to_string(step) +
                       ": non-finite loss or gradient, update "
                       "skipped (" +
                       std::to_string(state.bad_in_row) + " in a row)");
    }
    const bool diverged = state.bad_in_row >= config.train.max_bad_steps;
    state.step = step;
    state.samples += global_samples;
    interval_samples += global_samples;
    interval_tokens += global_targets;

    if (step % config.log.every_steps == 0 || step == total || diverged) {
      const double seconds = std::max(seconds_since(interval_start), 1e-9);
      nlohmann::json row = {{"step", step},
                            {"epoch", step_batches.epoch},
                            {"loss", loss},
                            {"lr", lr},
                            {"grad_norm", grad_norm},
                            {"samples_per_s", interval_samples / seconds},
                            {"elapsed_s", seconds_since(start)},
                            {"skipped_steps", state.skipped},
                            {"peak_memory_mb", peak_memory_mb(device)}};
      if (translation) row["tokens_per_s"] = interval_tokens / seconds;
      // Achieved model TFLOP/s of this rank (rank 0), and its share of the GPU's peak.
      const double tflops = interval_flops / seconds / 1e12;
      row["tflops"] = tflops;
      if (peak_tflops > 0) row["mfu"] = tflops / peak_tflops;
      metrics.write(row);
      progress.update({step, step_batches.epoch, loss, lr, grad_norm, interval_samples / seconds,
                       translation ? interval_tokens / seconds : 0.0});
      interval_start = Clock::now();
      interval_samples = interval_tokens = 0;
      interval_flops = 0;
    }
    if (diverged) {  // logged above, with the skipped count; no checkpoint of this state
      const std::string kept = find_latest_checkpoint(run_dir.string());
      throw RunFailure("training stopped at step " + std::to_string(step) + ": " +
                       std::to_string(state.bad_in_row) +
                       " non-finite steps in a row (train.max_bad_steps); " +
                       (kept.empty() ? std::string("no checkpoint was written before")
                                     : "the last good checkpoint is " + kept));
    }
    if (valid_info && config.eval.every_steps > 0 && step % config.eval.every_steps == 0) {
      run_eval();
      last_eval = step;
    }
    // Not while updates are being skipped: the newest checkpoint stays the last good one (a
    // stop or the end of training still saves).
    if (config.checkpoint.every_steps > 0 && step % config.checkpoint.every_steps == 0 &&
        state.bad_in_row == 0)
      save();
  }

  if (stopping) {
    if (last_saved != state.step) save();
    progress.message(std::string("stopped by ") + stop_signal_name() + " after step " +
                     std::to_string(state.step) + "; resume with --resume auto");
    progress.finish();
    return 0;
  }
  if (valid_info && last_eval != state.step && config.eval.every_steps > 0) run_eval();
  if (last_saved != state.step) save();
  progress.finish();
  if (rank == 0)
    std::fprintf(stderr, "done: %lld steps in %.1f s, run directory %s\n",
                 static_cast<long long>(state.step), seconds_since(start), run_dir.c_str());
  return 0;
}

}  // namespace tr
