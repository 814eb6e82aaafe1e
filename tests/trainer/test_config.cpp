// The run configuration (trainer/config.h): defaults, --set, every class of error with its
// one-line message, the resolved YAML round trip, the checks against data, weights and world
// size, and the configs shipped in configs/.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "layers/error.h"
#include "trainer/config.h"
#include "trainer/config_schema.h"
#include "trainer/model_config_yaml.h"

namespace tr {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTranslation = R"(
run: {name: t}
model: {type: encoder_decoder, d_model: 64, heads: 4, d_ff: 128, layers: 2}
data: {train: train.h5, valid: valid.h5}
train: {steps: 100, global_batch: 32, micro_batch: 8}
)";

constexpr const char* kVit = R"(
run:
  name: v
model:
  type: vit
  d_model: 32
  heads: 4
  d_ff: 64
  layers: 2
  image_size: 28
  patch_size: 4
data:
  train: images.h5
  valid: images_test.h5
train:
  steps: 10
)";

RunConfig from_text(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return run_config_from_yaml_text(text, "test.yaml", overrides);
}

// The message of the UserError that `f` throws; a test failure when it throws none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    return message;
  }
  ADD_FAILURE() << "no UserError thrown";
  return "";
}

std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { from_text(text, overrides); });
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path(::testing::TempDir()) /
            ("tr_config_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name), std::ios::binary) << text;
    return file(name);
  }

 private:
  fs::path path_;
};

DatasetInfo translation_data(std::int64_t vocab = 8000) {
  DatasetInfo d;
  d.path = "train.h5";
  d.kind = "translation";
  d.records = 1000;
  d.vocab_size = vocab;
  d.pad_id = 3;
  d.bos_id = 1;
  d.eos_id = 2;
  d.unk_id = 0;
  return d;
}

DatasetInfo image_data(std::int64_t size = 28, std::int64_t channels = 1,
                       std::int64_t classes = 10) {
  DatasetInfo d;
  d.path = "images.h5";
  d.kind = "images";
  d.records = 600;
  d.height = d.width = size;
  d.channels = channels;
  d.num_classes = classes;
  return d;
}

// ---- defaults ------------------------------------------------------------------------------

TEST(Config, DefaultsFillEveryKeyNotGiven) {
  const RunConfig c = from_text(kTranslation);
  EXPECT_EQ(c.run.name, "t");
  EXPECT_EQ(c.run.dir, "runs/t");
  EXPECT_EQ(c.run.seed, 0u);
  EXPECT_EQ(c.model.encoder_layers, 2);
  EXPECT_EQ(c.model.decoder_layers, 2);
  EXPECT_EQ(c.model.activation, "relu");
  EXPECT_EQ(c.model.norm, "pre");
  EXPECT_EQ(c.model.vocab_size, 0);
  EXPECT_TRUE(c.model.share_embeddings);
  EXPECT_EQ(c.model.init, "");
  EXPECT_TRUE(c.data.shuffle);
  EXPECT_EQ(c.data.batching, "sentences");
  EXPECT_EQ(c.train.epochs, 0);
  EXPECT_EQ(c.train.device, "auto");
  EXPECT_EQ(c.train.precision, "fp32");
  EXPECT_EQ(c.train.grad_clip, 1.0);
  EXPECT_EQ(c.train.optimizer.type, "adamw");
  EXPECT_EQ(c.train.optimizer.beta1, 0.9);
  EXPECT_EQ(c.train.optimizer.beta2, 0.999);
  EXPECT_EQ(c.train.schedule.type, ScheduleType::constant);
  EXPECT_EQ(c.train.schedule.lr, 1e-3);
  EXPECT_EQ(c.train.schedule.total_steps, 100);  // from train.steps
  EXPECT_EQ(c.parallel.tensor, 1);
  EXPECT_EQ(c.parallel.data, 0);  // auto
  EXPECT_EQ(c.parallel.zero, 0);
  EXPECT_TRUE(c.parallel.overlap);
  EXPECT_EQ(c.parallel.gpu_comm, "auto");
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.eval.beam, 1);
  EXPECT_EQ(c.eval.max_batches, 0);
  EXPECT_EQ(c.log.every_steps, 10);
  EXPECT_TRUE(c.log.progress);
}

TEST(Config, VitDefaultsToGeluUnlessGiven) {
  EXPECT_EQ(from_text(kVit).model.activation, "gelu");
  EXPECT_EQ(from_text(kVit, {"model.activation=gelu_tanh"}).model.activation, "gelu_tanh");
  EXPECT_EQ(from_text(kTranslation, {"model.activation=gelu_tanh"}).model.activation, "gelu_tanh");
  EXPECT_CONTAINS(
      load_error(kVit, {"model.activation=relu"}),
      "--set model.activation: the ViT's MLP is a GELU (gelu or gelu_tanh), got 'relu'");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.activation=swish"}),
                  "--set model.activation: expected one of relu, gelu, gelu_tanh");
}

TEST(Config, LayersSetsBothAndSpecificKeysWin) {
  const RunConfig c = from_text(kTranslation, {"model.decoder_layers=5"});
  EXPECT_EQ(c.model.encoder_layers, 2);
  EXPECT_EQ(c.model.decoder_layers, 5);
  // An override of layers replaces encoder/decoder layers given in the file.
  const RunConfig d = from_text(
      "model: {encoder_layers: 6, decoder_layers: 6}\ndata: {train: t.h5}\n"
      "train: {steps: 1}\neval: {every_steps: 0}\n",
      {"model.layers=2"});
  EXPECT_EQ(d.model.encoder_layers, 2);
  EXPECT_EQ(d.model.decoder_layers, 2);
}

TEST(Config, OptimizerSectionGivesTheModulesConfigs) {
  const RunConfig c =
      from_text(kTranslation, {"train.optimizer={type: sgd, momentum: 0.5, weight_decay: 0.1}"});
  EXPECT_EQ(c.train.optimizer.type, "sgd");
  EXPECT_EQ(c.train.optimizer.sgd().momentum, 0.5);
  EXPECT_EQ(c.train.optimizer.sgd().weight_decay, 0.1);
  EXPECT_EQ(c.train.optimizer.adamw().weight_decay, 0.1);
  EXPECT_EQ(c.train.optimizer.adamw().beta2, 0.999);
}

// ---- --set ---------------------------------------------------------------------------------

TEST(Config, SetOverridesNestedKeysListsAndSections) {
  const RunConfig c =
      from_text(kTranslation, {"train.optimizer.betas=[0.9,0.98]", "train.optimizer.lr=3e-4",
                               "model.d_model=128", "data.shuffle=false", "run.seed=7",
                               "train.schedule={type: cosine, warmup_steps: 10, min_lr: 1.0e-5}",
                               "model.d_model=256", "data.valid=other.h5"});
  EXPECT_EQ(c.train.optimizer.beta1, 0.9);
  EXPECT_EQ(c.train.optimizer.beta2, 0.98);
  EXPECT_EQ(c.train.schedule.lr, 3e-4);
  EXPECT_EQ(c.model.d_model, 256);  // the later --set wins
  EXPECT_FALSE(c.data.shuffle);
  EXPECT_EQ(c.run.seed, 7u);
  EXPECT_EQ(c.train.schedule.type, ScheduleType::cosine);
  EXPECT_EQ(c.train.schedule.warmup_steps, 10);
  EXPECT_EQ(c.train.schedule.min_lr, 1e-5);
  EXPECT_EQ(c.data.valid, "other.h5");
}

TEST(Config, SetStepsAndEpochsReplaceEachOther) {
  const RunConfig c = from_text(kTranslation, {"train.epochs=3"});
  EXPECT_EQ(c.train.steps, 0);
  EXPECT_EQ(c.train.epochs, 3);
  const RunConfig d = from_text(kTranslation, {"train.epochs=3", "train.steps=50"});
  EXPECT_EQ(d.train.steps, 50);
  EXPECT_EQ(d.train.epochs, 0);
}

TEST(Config, SetCanClearAnOptionalPath) {
  const RunConfig c = from_text(kTranslation, {"data.valid=", "eval.every_steps=0"});
  EXPECT_EQ(c.data.valid, "");
}

TEST(Config, SetUnknownKeySuggestsTheNearestFullPath) {
  const std::string m = load_error(kTranslation, {"train.optimzer.lr=0.1"});
  EXPECT_CONTAINS(m, "--set train.optimzer.lr: unknown key; did you mean train.optimizer.lr?");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.dmodel=3"}), "did you mean model.d_model?");
  EXPECT_CONTAINS(load_error(kTranslation, {"trian={steps: 3}"}), "did you mean train?");
  // Inside a section given as a mapping, the nearest key of that section.
  EXPECT_CONTAINS(load_error(kTranslation, {"train.schedule={tpye: cosine}"}),
                  "--set train.schedule.tpye: unknown key; did you mean train.schedule.type?");
}

TEST(Config, SetMalformedAssignments) {
  EXPECT_CONTAINS(load_error(kTranslation, {"train.steps"}), "expected key.path=value");
  EXPECT_CONTAINS(load_error(kTranslation, {"=5"}), "expected key.path=value");
  const std::string m = load_error(kTranslation, {"train.optimizer.betas=[0.9,"});
  EXPECT_CONTAINS(m, "--set train.optimizer.betas");
  EXPECT_CONTAINS(m, "is not a YAML value");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.schedule=cosine"}),
                  "--set train.schedule: expected a mapping of its keys, got 'cosine'");
}

TEST(Config, SetValueErrorsNameSet) {
  EXPECT_CONTAINS(load_error(kTranslation, {"train.global_batch=0"}),
                  "--set train.global_batch: expected an integer >= 1, got 0");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.steps=many"}),
                  "--set train.steps: expected an integer >= 0, got 'many'");
}

TEST(Config, ApplyOverrideToALoadedConfig) {
  RunConfig c = from_text(kTranslation);
  apply_override(c, "model.layers=4");
  EXPECT_EQ(c.model.encoder_layers, 4);
  EXPECT_EQ(c.model.decoder_layers, 4);
  apply_override(c, "train.epochs=2");
  EXPECT_EQ(c.train.epochs, 2);
  EXPECT_EQ(c.train.steps, 0);
  apply_override(c, "train.optimizer.betas=[0.8, 0.9]");
  EXPECT_EQ(c.train.optimizer.beta1, 0.8);
  EXPECT_EQ(c.model.d_model, 64);  // untouched keys keep their values
  EXPECT_CONTAINS(error_of([&] { apply_override(c, "model.heads=3"); }),
                  "model.heads: 3 does not divide model.d_model 64");
  EXPECT_CONTAINS(error_of([&] { apply_override(c, "log.every=3"); }),
                  "did you mean log.every_steps?");
  EXPECT_EQ(c.model.heads, 4);  // a failed override leaves the config as it was
}

// ---- unknown keys, types, ranges --------------------------------------------------------------

TEST(Config, UnknownKeysSuggestTheNearestKeyOfTheirSection) {
  const std::string m = load_error(std::string(kTranslation) + "log: {every_step: 5}\n");
  EXPECT_CONTAINS(m, "test.yaml: log.every_step: unknown key; did you mean log.every_steps?");
  EXPECT_CONTAINS(load_error("trian: {steps: 1}\n"), "trian: unknown key; did you mean train?");
  EXPECT_CONTAINS(load_error("train:\n  optimzer: {lr: 0.1}\n"),
                  "train.optimzer: unknown key; did you mean train.optimizer?");
  EXPECT_CONTAINS(load_error("model: {d_modle: 3}\n"), "did you mean model.d_model?");
  EXPECT_CONTAINS(load_error("train: {schedule: {warmup: 3}}\n"),
                  "did you mean train.schedule.warmup_steps?");
}

TEST(Config, WrongTypesNameKeyExpectedAndGot) {
  const std::string base = "data: {train: t.h5}\neval: {every_steps: 0}\n";
  EXPECT_CONTAINS(load_error(base + "train: {steps: abc}\n"),
                  "test.yaml: train.steps: expected an integer >= 0, got 'abc'");
  EXPECT_CONTAINS(load_error(base + "train: {steps: 1.5}\n"), "got '1.5'");
  EXPECT_CONTAINS(load_error("data: {train: t.h5, shuffle: maybe}\ntrain: {steps: 1}\n"),
                  "data.shuffle: expected true or false, got 'maybe'");
  EXPECT_CONTAINS(load_error(base + "train: {steps: 1, optimizer: {betas: [0.9]}}\n"),
                  "train.optimizer.betas: expected a list of two numbers in [0, 1), got [0.9]");
  EXPECT_CONTAINS(load_error(base + "train: {steps: 1, optimizer: {lr: fast}}\n"),
                  "train.optimizer.lr: expected a number > 0, got 'fast'");
  EXPECT_CONTAINS(load_error(base + "train: 5\n"),
                  "test.yaml: train: expected a mapping of its keys, got '5'");
  EXPECT_CONTAINS(load_error(base + "train: {steps: {a: 1}}\n"),
                  "train.steps: expected an integer >= 0, got a mapping");
  EXPECT_CONTAINS(load_error(base + "train: {steps: 1, schedule: {type: cosin}}\n"),
                  "train.schedule.type: expected one of constant, inverse_sqrt, cosine, got "
                  "'cosin'");
  EXPECT_CONTAINS(load_error("- a\n- b\n"), "test.yaml: expected a mapping of sections");
  EXPECT_CONTAINS(load_error(base + "model: {pad_id: 99999999999}\ntrain: {steps: 1}\n"),
                  "model.pad_id: expected an integer in [0, 2147483647], got '99999999999'");
}

TEST(Config, ValuesOutOfRangeNameKeyExpectedAndGot) {
  EXPECT_CONTAINS(load_error(kTranslation, {"train.micro_batch=-1"}),
                  "train.micro_batch: expected an integer >= 0, got -1");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.dropout=1"}),
                  "model.dropout: expected a number in [0, 1), got 1.0");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.optimizer.lr=0"}),
                  "train.optimizer.lr: expected a number > 0, got 0.0");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.optimizer.lr=.nan"}),
                  "train.optimizer.lr: expected a number > 0, got nan");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.optimizer.betas=[0.9, 1.0]"}),
                  "train.optimizer.betas: expected a list of two numbers in [0, 1), got "
                  "[0.9, 1.0]");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.type=vti"}),
                  "model.type: expected one of encoder_decoder, vit, got 'vti'");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.device=gpu"}),
                  "train.device: expected one of cpu, cuda, auto, got 'gpu'");
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.zero=2"}),
                  "parallel.zero: expected an integer in [0, 1], got 2");
  EXPECT_CONTAINS(load_error(kTranslation, {"run.name="}),
                  "run.name: expected a non-empty string, got ''");
  EXPECT_CONTAINS(load_error(kTranslation, {"log.every_steps=0"}),
                  "log.every_steps: expected an integer >= 1, got 0");
  // A value from the file is prefixed with the file.
  EXPECT_CONTAINS(load_error(std::string(kTranslation) + "eval: {beam: 0}\n"),
                  "test.yaml: eval.beam: expected an integer in [1, 64], got 0");
}

TEST(Config, ParallelDataIsAnIntegerOrAuto) {
  EXPECT_EQ(from_text(kTranslation, {"parallel.data=auto"}).parallel.data, 0);
  EXPECT_EQ(from_text(kTranslation, {"parallel.data=2"}).parallel.data, 2);
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.data=0"}),
                  "parallel.data: expected an integer >= 1 or auto, got '0'");
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.data=many"}),
                  "expected an integer >= 1 or auto, got 'many'");
  EXPECT_CONTAINS(run_config_to_yaml(from_text(kTranslation)), "data: auto");
}

TEST(Config, AttentionDropoutIsExactOrFused) {
  EXPECT_EQ(from_text(kTranslation).train.attention_dropout, "exact");
  EXPECT_EQ(from_text(kTranslation, {"train.attention_dropout=fused"}).train.attention_dropout,
            "fused");
  EXPECT_CONTAINS(load_error(kTranslation, {"train.attention_dropout=cudnn"}),
                  "train.attention_dropout: expected one of exact, fused, got 'cudnn'");
}

TEST(Config, GpuCommIsNcclMpiOrAuto) {
  EXPECT_EQ(from_text(kTranslation, {"parallel.gpu_comm=mpi"}).parallel.gpu_comm, "mpi");
  EXPECT_EQ(from_text(kTranslation, {"parallel.gpu_comm=nccl"}).parallel.gpu_comm, "nccl");
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.gpu_comm=gloo"}),
                  "parallel.gpu_comm: expected one of auto, nccl, mpi, got 'gloo'");
  EXPECT_CONTAINS(run_config_to_yaml(from_text(kTranslation)), "gpu_comm: auto");
}

TEST(Config, DuplicateKeysAreErrors) {
  const std::string m = load_error(std::string(kTranslation) +
                                   "log:\n  every_steps: 1\n"
                                   "  every_steps: 2\n");
  EXPECT_CONTAINS(m, "test.yaml: log.every_steps: given twice");
}

// ---- files ---------------------------------------------------------------------------------

TEST(Config, MissingEmptyAndDirectoryFilesAreOneLineErrors) {
  TempDir dir;
  const std::string missing = dir.file("missing.yaml");
  std::string m = error_of([&] { load_run_config(missing, {}); });
  EXPECT_CONTAINS(m, missing + ": cannot read the config");
  EXPECT_CONTAINS(m, "No such file");
  const std::string empty = dir.write("empty.yaml", "");
  EXPECT_CONTAINS(error_of([&] { load_run_config(empty, {}); }), empty + ": the config is empty");
  const std::string comments = dir.write("comments.yaml", "# nothing here\n\n");
  EXPECT_CONTAINS(error_of([&] { load_run_config(comments, {}); }), "the config is empty");
  EXPECT_CONTAINS(error_of([&] { load_run_config(dir.file(""), {}); }), "is a directory");
}

TEST(Config, YamlSyntaxErrorNamesFileAndLine) {
  TempDir dir;
  const std::string path = dir.write("bad.yaml",
                                     "run:\n  name: x\ntrain:\n  steps: [1, 2\n"
                                     "model:\n  d_model: 3\n");
  const std::string m = error_of([&] { load_run_config(path, {}); });
  EXPECT_CONTAINS(m, path + ":");
  EXPECT_CONTAINS(m, "YAML syntax error");
  const std::string tab = dir.write("tab.yaml", "run:\n  name: x\n   seed: 3\n");
  EXPECT_CONTAINS(error_of([&] { load_run_config(tab, {}); }), tab + ":3:");
}

// ---- cross-key checks ----------------------------------------------------------------------

TEST(Config, CrossKeyChecks) {
  EXPECT_CONTAINS(load_error(kTranslation, {"model.heads=5"}),
                  "--set model.heads: 5 does not divide model.d_model 64");
  EXPECT_CONTAINS(load_error(std::string(kTranslation) + "parallel: {tensor: 8}\n"),
                  "test.yaml: model.heads: 4 is not divisible by parallel.tensor 8");
  EXPECT_CONTAINS(load_error(kVit, {"model.image_size=30"}),
                  "model.image_size: 30 is not a multiple of model.patch_size 4");
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.tensor=3"}),
                  "model.heads: 4 is not divisible by parallel.tensor 3");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.d_ff=130", "parallel.tensor=4"}),
                  "model.d_ff: 130 is not divisible by parallel.tensor 4");
  EXPECT_CONTAINS(load_error(std::string(kTranslation) + "train: {epochs: 2}\n"), "given twice");
  EXPECT_CONTAINS(load_error("data: {train: t.h5}\ntrain: {steps: 3, epochs: 2}\n"),
                  "train.epochs: give train.steps or train.epochs, not both");
  EXPECT_CONTAINS(load_error("data: {train: t.h5}\ntrain: {global_batch: 4}\n"),
                  "train.steps: expected train.steps or train.epochs > 0, got neither");
  EXPECT_CONTAINS(load_error(kTranslation, {"data.valid="}),
                  "eval.every_steps: 1000 needs data.valid");
  EXPECT_CONTAINS(load_error(kVit, {"data.batching=tokens"}),
                  "data.batching: tokens applies to translation");
  EXPECT_CONTAINS(load_error(kTranslation, {"data.batching=tokens", "data.max_tokens=100"}),
                  "data.max_tokens: 100 is below model.max_len 256");
  EXPECT_CONTAINS(
      load_error(kTranslation, {"train.schedule.type=cosine", "train.schedule.warmup_steps=200"}),
      "train.schedule.warmup_steps: 200 exceeds train.steps 100");
  EXPECT_CONTAINS(
      load_error(kTranslation, {"train.schedule.type=cosine", "train.schedule.min_lr=0.01"}),
      "train.schedule.min_lr: expected at most train.optimizer.lr 0.001, got 0.01");
  EXPECT_CONTAINS(load_error(kVit, {"model.norm=post"}), "the ViT is pre-LN only");
  EXPECT_CONTAINS(load_error(kTranslation, {"model.vocab_size=100", "model.pad_id=100"}),
                  "model.pad_id: 100 is outside the vocabulary");
  // With a fixed parallel.data the batch split is checked at load.
  EXPECT_CONTAINS(load_error(kTranslation, {"parallel.data=4", "train.micro_batch=16"}),
                  "train.global_batch: 32 is not divisible by train.micro_batch 16 x "
                  "parallel.data 4");
  EXPECT_NO_THROW(from_text(kTranslation, {"parallel.data=4", "train.micro_batch=8"}));
}

TEST(Config, AccumulationStepsAndDataParallelSize) {
  const RunConfig c = from_text(kTranslation, {"train.global_batch=64"});
  EXPECT_EQ(accumulation_steps(c, 1), 8);
  EXPECT_EQ(accumulation_steps(c, 2), 4);
  EXPECT_EQ(accumulation_steps(c, 8), 1);
  std::string m = error_of([&] { accumulation_steps(c, 3); });
  EXPECT_CONTAINS(m, "train.global_batch: 64");
  EXPECT_CONTAINS(m, "train.micro_batch 8");
  EXPECT_CONTAINS(m, "parallel.data 3");
  EXPECT_CONTAINS(error_of([&] { accumulation_steps(c, 16); }), "more than the global batch");

  const RunConfig whole = from_text(kTranslation, {"train.micro_batch=0"});
  EXPECT_EQ(micro_batch_size(whole, 4), 8);
  EXPECT_EQ(accumulation_steps(whole, 4), 1);
  m = error_of([&] { accumulation_steps(whole, 3); });
  EXPECT_CONTAINS(m, "train.global_batch: 32 is not divisible by parallel.data 3");
  EXPECT_CONTAINS(m, "train.micro_batch");

  const RunConfig tp2 = from_text(kTranslation, {"parallel.tensor=2"});
  EXPECT_EQ(data_parallel_size(tp2, 8), 4);
  EXPECT_CONTAINS(error_of([&] { data_parallel_size(tp2, 3); }),
                  "parallel.tensor: 2 does not divide the 3 processes");
  const RunConfig fixed = from_text(kTranslation, {"parallel.data=2"});
  EXPECT_EQ(data_parallel_size(fixed, 2), 2);
  EXPECT_CONTAINS(error_of([&] { data_parallel_size(fixed, 4); }),
                  "parallel.data: 2 x parallel.tensor 1 = 2 processes, but 4 were started");
}

TEST(Config, TotalStepsFromStepsOrEpochs) {
  EXPECT_EQ(total_steps(from_text(kTranslation), 1000), 100);
  const RunConfig c = from_text(kTranslation, {"train.epochs=3"});
  EXPECT_EQ(total_steps(c, 100), 12);  // ceil(100 / 32) = 4 steps an epoch
  EXPECT_EQ(total_steps(c, 96), 9);
  EXPECT_CONTAINS(error_of([&] { total_steps(c, 0); }), "train.epochs");
}

// ---- against data --------------------------------------------------------------------------

TEST(Config, TranslationTakesVocabularyAndIdsFromTheData) {
  RunConfig c = from_text(kTranslation);
  const DatasetInfo train = translation_data();
  DatasetInfo valid = translation_data();
  valid.path = "valid.h5";
  check_config_against_data(c, train, &valid);
  EXPECT_EQ(c.model.vocab_size, 8000);
  EXPECT_EQ(c.model.pad_id, 3);
  EXPECT_EQ(c.model.bos_id, 1);
  EXPECT_EQ(c.model.eos_id, 2);
  // The resolved config records what the data decided.
  const std::string yaml = run_config_to_yaml(c);
  EXPECT_CONTAINS(yaml, "vocab_size: 8000");
  EXPECT_CONTAINS(yaml, "pad_id: 3");
  EXPECT_EQ(from_text(yaml).model.vocab_size, 8000);
}

TEST(Config, TranslationMismatchesNameKeyAndFile) {
  RunConfig c = from_text(kTranslation, {"model.vocab_size=1000"});
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, translation_data(), nullptr); }),
                  "model.vocab_size: 1000 does not match data.train train.h5 (vocab_size 8000)");
  RunConfig d = from_text(kTranslation);
  DatasetInfo valid = translation_data(7000);
  valid.path = "valid.h5";
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(d, translation_data(), &valid); }),
                  "data.valid valid.h5: vocab_size 7000 differs from data.train's 8000");
  RunConfig e = from_text(kTranslation);
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(e, image_data(), nullptr); }),
                  "data.train images.h5: holds images data, but model.type encoder_decoder "
                  "needs translation");
}

TEST(Config, ImagesMustMatchTheVit) {
  RunConfig c = from_text(kVit);
  EXPECT_NO_THROW(check_config_against_data(c, image_data(), nullptr));
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, image_data(32), nullptr); }),
                  "model.image_size: 28 does not match data.train images.h5 (32x32 images)");
  DatasetInfo rgb = image_data(28, 3);
  rgb.path = "rgb.h5";
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, image_data(), &rgb); }),
                  "model.channels: 1 does not match data.valid rgb.h5 (3 channels)");
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, image_data(28, 1, 100), nullptr); }),
                  "model.num_classes: 10 does not match data.train images.h5 (100 classes)");
  DatasetInfo wide = image_data();
  wide.width = 32;
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, wide, nullptr); }), "square images");
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(c, translation_data(), nullptr); }),
                  "holds translation data, but model.type vit needs images");
}

TEST(Config, EpochsBecomeTheScheduleLength) {
  RunConfig c = from_text(kVit, {"train.epochs=2", "train.global_batch=64",
                                 "train.schedule={type: cosine, warmup_steps: 5}"});
  EXPECT_EQ(c.train.schedule.total_steps, 0);           // unknown until the data is seen
  check_config_against_data(c, image_data(), nullptr);  // 600 records: 10 steps an epoch
  EXPECT_EQ(c.train.schedule.total_steps, 20);
  EXPECT_EQ(c.train.steps, 0);  // the resolved config keeps epochs

  RunConfig d = from_text(kVit, {"train.epochs=1", "train.global_batch=64",
                                 "train.schedule={type: cosine, warmup_steps: 50}"});
  EXPECT_CONTAINS(error_of([&] { check_config_against_data(d, image_data(), nullptr); }),
                  "train.schedule.warmup_steps: 50 exceeds the 10 steps of train.epochs 1");
}

// ---- against weights -------------------------------------------------------------------------

TEST(Config, WeightsMustAgreeOnShapes) {
  RunConfig c = from_text(kTranslation, {"model.init=w.h5"});
  check_config_against_data(c, translation_data(), nullptr);
  const std::string same = model_config_to_yaml_text(c.model);
  EXPECT_NO_THROW(check_config_against_weights(c, same, "w.h5"));

  ModelConfig other = c.model;
  other.dropout = 0.3;  // training settings may differ
  EXPECT_NO_THROW(check_config_against_weights(c, model_config_to_yaml_text(other), "w.h5"));

  other = c.model;
  other.d_ff = 256;
  other.encoder_layers = 6;  // the first differing key is named
  EXPECT_CONTAINS(
      error_of([&] { check_config_against_weights(c, model_config_to_yaml_text(other), "w.h5"); }),
      "model.init: w.h5 has model.d_ff 256, but the config has 128");
  other = c.model;
  other.vocab_size = 9000;
  EXPECT_CONTAINS(
      error_of([&] { check_config_against_weights(c, model_config_to_yaml_text(other), "w.h5"); }),
      "model.vocab_size 9000, but the config has 8000");
  other = c.model;
  other.positional = "learned";
  EXPECT_CONTAINS(
      error_of([&] { check_config_against_weights(c, model_config_to_yaml_text(other), "w.h5"); }),
      "model.positional learned, but the config has sinusoidal");

  const RunConfig vit = from_text(kVit);
  EXPECT_CONTAINS(error_of([&] { check_config_against_weights(vit, same, "w.h5"); }),
                  "model.init: w.h5 holds a encoder_decoder model, but model.type is vit");
  EXPECT_CONTAINS(error_of([&] { check_config_against_weights(c, "d_model: [1\n", "w.h5"); }),
                  "w.h5: config: invalid YAML");
  EXPECT_CONTAINS(error_of([&] { check_config_against_weights(c, "d_modl: 64\n", "w.h5"); }),
                  "w.h5: config: model.d_modl: unknown key; did you mean model.d_model?");
}

TEST(Config, ModelYamlOfWeightsFilesRoundTrips) {
  const RunConfig vit = from_text(kVit, {"model.activation=gelu_tanh"});
  const std::string text = model_config_to_yaml_text(vit.model);
  EXPECT_EQ(text.find("init"), std::string::npos);
  EXPECT_EQ(text.find("vocab_size"), std::string::npos);  // not a ViT key
  const ModelConfig back = model_config_from_yaml_text(text, "w.h5: config");
  EXPECT_EQ(back.type, "vit");
  EXPECT_EQ(back.activation, "gelu_tanh");  // kept, not reset to the ViT's gelu
  EXPECT_EQ(back.d_model, 32);
  EXPECT_EQ(back.image_size, 28);
  EXPECT_EQ(model_config_to_yaml_text(back), text);
  EXPECT_CONTAINS(error_of([&] { model_config_from_yaml_text("heads: 0\n", "w.h5: config"); }),
                  "w.h5: config: model.heads: expected an integer >= 1, got 0");
}

// ---- resolved config -----------------------------------------------------------------------

TEST(Config, ResolvedYamlRoundTrips) {
  for (const auto& [text, overrides] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {kTranslation,
            {"train.optimizer.betas=[0.9,0.98]", "train.optimizer.eps=1e-9",
             "train.optimizer.lr=3e-4", "model.dropout=0.1", "train.label_smoothing=0.1",
             "parallel.data=2", "model.vocab_size=32000", "train.schedule.type=inverse_sqrt",
             "run.name='my run: 1'", "model.init=weights/init.h5"}},
           {kVit, {"train.epochs=4", "parallel.bucket_mb=12.5", "log.progress=false"}}}) {
    const RunConfig c = from_text(text, overrides);
    const std::string yaml = run_config_to_yaml(c);
    const RunConfig back = from_text(yaml);
    EXPECT_EQ(run_config_to_yaml(back), yaml);
    EXPECT_EQ(back.run.name, c.run.name);
    EXPECT_EQ(back.model.init, c.model.init);
    EXPECT_EQ(back.model.dropout, c.model.dropout);
    EXPECT_EQ(back.train.schedule.lr, c.train.schedule.lr);
    EXPECT_EQ(back.train.optimizer.eps, c.train.optimizer.eps);
    EXPECT_EQ(back.train.optimizer.beta2, c.train.optimizer.beta2);
    EXPECT_EQ(back.parallel.data, c.parallel.data);
    EXPECT_EQ(back.parallel.bucket_mb, c.parallel.bucket_mb);
    EXPECT_EQ(back.train.epochs, c.train.epochs);
    EXPECT_EQ(back.model.activation, c.model.activation);
  }
}

TEST(Config, ResolvedYamlHoldsEveryKeyThatApplies) {
  const RunConfig ed = from_text(kTranslation);
  const RunConfig vit = from_text(kVit);
  const YAML::Node ed_yaml = YAML::Load(run_config_to_yaml(ed));
  const YAML::Node vit_yaml = YAML::Load(run_config_to_yaml(vit));
  for (const config_schema::Option& o : config_schema::options()) {
    for (const auto& [config, yaml] : {std::pair{&ed, &ed_yaml}, {&vit, &vit_yaml}}) {
      YAML::Node node = YAML::Clone(*yaml);
      std::size_t begin = 0;
      for (std::size_t dot = o.key.find('.'); dot != std::string::npos;
           dot = o.key.find('.', begin)) {
        node.reset(node[o.key.substr(begin, dot - begin)]);
        begin = dot + 1;
      }
      const bool expected = o.emitted && config_schema::applies(o, *config);
      EXPECT_EQ(static_cast<bool>(node[o.key.substr(begin)]), expected)
          << o.key << " for " << config->model.type;
    }
  }
}

TEST(Config, WriteResolvedConfigIsAtomicAndLoadsBack) {
  TempDir dir;
  RunConfig c = from_text(kTranslation, {"train.optimizer.lr=5e-4"});
  check_config_against_data(c, translation_data(), nullptr);
  const std::string path = dir.file("run/nested/config.yaml");
  write_resolved_config(c, path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const RunConfig back = load_run_config(path, {});
  EXPECT_EQ(run_config_to_yaml(back), run_config_to_yaml(c));
  EXPECT_EQ(back.model.vocab_size, 8000);
  EXPECT_EQ(back.run.dir, "runs/t");
  // Rewriting replaces the file whole.
  c.train.steps = 7;
  write_resolved_config(c, path);
  EXPECT_EQ(load_run_config(path, {}).train.steps, 7);
  EXPECT_CONTAINS(error_of([&] { write_resolved_config(c, dir.file("run/nested/config.yaml/x")); }),
                  "config.yaml");
}

// ---- help, table, shipped configs ------------------------------------------------------------

TEST(Config, HelpListsEveryKeyWithDefault) {
  const std::string help = config_help();
  // The help texts are wrapped; joined again, each must be there whole.
  std::string joined;
  for (std::size_t i = 0; i < help.size(); ++i) {
    if (help.compare(i, 7, "\n      ") == 0) {
      joined += ' ';
      i += 6;
    } else {
      joined += help[i];
    }
  }
  for (const config_schema::Option& o : config_schema::options()) {
    EXPECT_CONTAINS(help, "\n  " + o.key + ": ");
    EXPECT_CONTAINS(joined, o.help);
  }
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 100u) << line;
  EXPECT_CONTAINS(help, "train.optimizer.betas: [0.9, 0.999]");
  EXPECT_CONTAINS(help, "parallel.data: auto");
  EXPECT_CONTAINS(help, "model.image_size: 28    an integer >= 1 (vit only)");
}

TEST(Config, TableKeysAreUniqueAndDocumented) {
  std::vector<std::string> keys;
  for (const config_schema::Option& o : config_schema::options()) {
    EXPECT_FALSE(o.help.empty()) << o.key;
    EXPECT_FALSE(o.expected.empty()) << o.key;
    EXPECT_TRUE(o.read) << o.key;
    EXPECT_EQ(std::count(keys.begin(), keys.end(), o.key), 0) << o.key;
    keys.push_back(o.key);
  }
  EXPECT_EQ(config_schema::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(config_schema::edit_distance("", "abc"), 3u);
  EXPECT_EQ(config_schema::nearest("stesp", {"steps", "epochs"}), "steps");
  EXPECT_EQ(config_schema::nearest("warm", {"type", "warmup_steps", "warmup"}), "warmup");
}

TEST(Config, ShippedConfigsLoad) {
  const std::string dir = std::string(TR_SOURCE_DIR) + "/configs/";
  const std::vector<std::pair<std::string, std::string>> shipped = {
      {"smoke_vit.yaml", "vit"},
      {"smoke_translation.yaml", "encoder_decoder"},
      {"vit_fashion_mnist.yaml", "vit"},
      {"transformer_multi30k.yaml", "encoder_decoder"}};
  for (const auto& [name, type] : shipped) {
    SCOPED_TRACE(name);
    RunConfig c;
    ASSERT_NO_THROW(c = load_run_config(dir + name, {}));
    EXPECT_EQ(c.model.type, type);
    EXPECT_FALSE(c.data.train.empty());
    EXPECT_EQ(c.run.dir, "runs/" + name.substr(0, name.size() - 5));
    // Every shipped config runs on 1, 2, 4 and 8 data-parallel ranks.
    for (int dp : {1, 2, 4, 8}) EXPECT_GE(accumulation_steps(c, dp), 1) << "dp " << dp;
    if (type == "vit") {
      RunConfig with_data = c;
      DatasetInfo fashion_mnist = image_data();
      fashion_mnist.records = 60000;
      EXPECT_NO_THROW(check_config_against_data(with_data, fashion_mnist, nullptr));
    } else {
      RunConfig with_data = c;
      EXPECT_NO_THROW(check_config_against_data(with_data, translation_data(), nullptr));
      EXPECT_EQ(with_data.model.vocab_size, 8000);
    }
  }
}

}  // namespace
}  // namespace tr
