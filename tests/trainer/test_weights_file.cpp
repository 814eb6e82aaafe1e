// Weights files (trainer/weights_file.h) and the HDF5 wrapper under them (data/h5.h).
//
// Every failure must be a UserError whose one line names the file and the tensor, and HDF5
// must print nothing of its own (its error stack would bury that line), so each failing call
// runs with stderr captured.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "data/h5.h"
#include "layers/error.h"
#include "layers/parameter.h"
#include "trainer/weights_file.h"

namespace tr {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path(::testing::TempDir()) /
            ("tr_weights_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename());
    return names;
  }

 private:
  fs::path path_;
};

// Runs `action`, expects a UserError, and returns its message; fails the test if HDF5 (or
// anything else) printed to stderr meanwhile.
std::string user_error_of(const std::function<void()>& action) {
  std::string message;
  ::testing::internal::CaptureStderr();
  try {
    action();
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    message = e.what();
  }
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "") << "stderr must stay empty";
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  return message;
}

// A miniature model: names as the real models use them, shapes that are easy to tell apart.
struct Params {
  explicit Params(DType dtype, bool with_fc2 = true, Shape fc2_shape = {16, 24}) {
    init_parameter(embed, "embed.weight", {37, 16}, dtype, true);
    init_parameter(norm, "encoder.norm.weight", {16}, dtype, false);
    init_parameter(bias, "encoder.layers.0.self_attn.q_proj.bias", {16}, dtype, false);
    init_parameter(fc2, "decoder.layers.1.ffn.fc2.weight", fc2_shape, dtype, true);
    list = {&embed, &norm, &bias};
    if (with_fc2) list.push_back(&fc2);
  }
  // Distinct, non-trivial values; `offset` tells two sets apart.
  void fill(double offset) {
    for (Parameter* p : list) {
      for (std::int64_t i = 0; i < p->value.numel(); ++i) {
        const double v = offset + 0.1 * static_cast<double>(i) + 1.0 / 3.0;
        if (p->value.dtype() == DType::f32)
          p->value.data<float>()[i] = static_cast<float>(v);
        else
          p->value.data<double>()[i] = v;
      }
    }
  }
  double at(const Parameter& p, std::int64_t i) const {
    return p.value.dtype() == DType::f32 ? p.value.data<float>()[i] : p.value.data<double>()[i];
  }
  Parameter embed, norm, bias, fc2;
  ParameterList list;
};

const char* kConfig = "type: encoder_decoder\nd_model: 16\n";

TEST(WeightsFile, RoundTripF32) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params out(DType::f32);
  out.fill(0.5);
  write_weights(path, "encoder_decoder", kConfig, out.list);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.h5"}) << "the .tmp file is renamed away";

  Params in(DType::f32);
  const WeightsInfo info = read_weights(path, in.list);
  EXPECT_EQ(info.model_type, "encoder_decoder");
  EXPECT_EQ(info.config, kConfig);
  for (std::size_t k = 0; k < out.list.size(); ++k) {
    ASSERT_EQ(in.list[k]->value.shape(), out.list[k]->value.shape());
    for (std::int64_t i = 0; i < out.list[k]->value.numel(); ++i)
      ASSERT_EQ(in.list[k]->value.data<float>()[i], out.list[k]->value.data<float>()[i])
          << out.list[k]->name << " element " << i;
  }

  // The layout itself: float32 root datasets named by the canonical names, dots kept.
  h5::File file = h5::File::open(path);
  EXPECT_EQ(
      file.datasets("/"),
      (std::vector<std::string>{"decoder.layers.1.ffn.fc2.weight", "embed.weight",
                                "encoder.layers.0.self_attn.q_proj.bias", "encoder.norm.weight"}));
  EXPECT_TRUE(file.groups("/").empty());
  EXPECT_EQ(file.stored_type("embed.weight").dtype, DType::f32);
  EXPECT_EQ(file.shape("embed.weight"), (Shape{37, 16}));
}

TEST(WeightsFile, RoundTripF64StoresF32) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params out(DType::f64);
  out.fill(-2.0);
  write_weights(path, "encoder_decoder", kConfig, out.list);
  EXPECT_EQ(h5::File::open(path).stored_type("encoder.norm.weight").dtype, DType::f32);

  Params in64(DType::f64);
  read_weights(path, in64.list);
  Params in32(DType::f32);
  read_weights(path, in32.list);
  for (std::size_t k = 0; k < out.list.size(); ++k) {
    for (std::int64_t i = 0; i < out.list[k]->value.numel(); ++i) {
      const float rounded = static_cast<float>(out.at(*out.list[k], i));
      ASSERT_EQ(in64.at(*in64.list[k], i), static_cast<double>(rounded)) << out.list[k]->name;
      ASSERT_EQ(in32.list[k]->value.data<float>()[i], rounded) << out.list[k]->name;
    }
  }
}

TEST(WeightsFile, MissingTensor) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params out(DType::f32, /*with_fc2=*/false);
  out.fill(1.0);
  write_weights(path, "encoder_decoder", kConfig, out.list);

  Params in(DType::f32);
  in.fill(7.0);
  EXPECT_EQ(user_error_of([&] { read_weights(path, in.list); }),
            path + ": tensor 'decoder.layers.1.ffn.fc2.weight' is missing");
  EXPECT_EQ(in.at(in.embed, 0), static_cast<float>(7.0 + 1.0 / 3.0)) << "params left unchanged";
}

TEST(WeightsFile, WrongShape) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params out(DType::f32, true, {16, 24});
  out.fill(1.0);
  write_weights(path, "encoder_decoder", kConfig, out.list);

  Params in(DType::f32, true, {24, 16});
  in.fill(7.0);
  EXPECT_EQ(user_error_of([&] { read_weights(path, in.list); }),
            path +
                ": tensor 'decoder.layers.1.ffn.fc2.weight' has shape [16, 24], expected "
                "[24, 16]");
  EXPECT_EQ(in.at(in.embed, 3), static_cast<float>(7.0 + 0.3 + 1.0 / 3.0))
      << "embed.weight comes before the bad tensor and must not have been loaded";
}

TEST(WeightsFile, UnexpectedTensor) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params out(DType::f32);
  Parameter foo;
  init_parameter(foo, "foo", {3}, DType::f32, false);
  out.list.push_back(&foo);
  write_weights(path, "encoder_decoder", kConfig, out.list);

  Params in(DType::f32);
  const std::string message = user_error_of([&] { read_weights(path, in.list); });
  EXPECT_EQ(message.rfind(path + ": unexpected tensor 'foo'", 0), 0u) << message;
}

TEST(WeightsFile, RootGroupsAreIgnored) {
  // Golden files are weights files with reference data in groups beside the tensors.
  TempDir dir;
  const std::string path = dir.file("golden.h5");
  Params out(DType::f32);
  out.fill(0.25);
  {
    h5::File file = h5::File::create(path);
    file.write_attr("/", "model_type", "vit");
    file.write_attr("/", "config", "type: vit\n");
    for (Parameter* p : out.list) file.write(p->name, p->value, DType::f32);
    file.write("expected/grads/embed.weight", out.embed.value, DType::f64);
    file.write<double>("expected/loss", {}, {1.5});
    file.close();
  }
  Params in(DType::f64);
  const WeightsInfo info = read_weights(path, in.list);
  EXPECT_EQ(info.model_type, "vit");
  EXPECT_EQ(in.at(in.fc2, 5), static_cast<double>(out.fc2.value.data<float>()[5]));
}

TEST(WeightsFile, NotAnHdf5File) {
  TempDir dir;
  const std::string path = dir.file("x.h5");
  std::ofstream(path) << "this is a text file, not HDF5\n";
  Params in(DType::f32);
  EXPECT_EQ(user_error_of([&] { read_weights(path, in.list); }), path + ": not an HDF5 file");
}

TEST(WeightsFile, MissingFile) {
  TempDir dir;
  const std::string path = dir.file("nothing.h5");
  Params in(DType::f32);
  EXPECT_EQ(user_error_of([&] { read_weights(path, in.list); }), path + ": no such file");
}

TEST(WeightsFile, NotAWeightsFile) {
  TempDir dir;
  const std::string path = dir.file("data.h5");
  {
    h5::File file = h5::File::create(path);
    file.write<std::int64_t>("labels", {2}, {1, 2});
    file.close();
  }
  Params in(DType::f32);
  EXPECT_EQ(user_error_of([&] { read_weights(path, in.list); }),
            path + ": not a weights file (root attribute 'model_type' is missing)");
}

TEST(WeightsFile, UnwritableDirectoryLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("no_such_dir/w.h5");
  Params out(DType::f32);
  const std::string message =
      user_error_of([&] { write_weights(path, "vit", "type: vit\n", out.list); });
  EXPECT_EQ(message.rfind(path + ".tmp: cannot create file", 0), 0u) << message;
  EXPECT_TRUE(dir.entries().empty());
}

TEST(WeightsFile, QuietInAnotherThread) {
  // A thread-safe HDF5 keeps the error-printing switch per thread: a loader's prefetch thread
  // must be silenced as well as the main thread.
  h5::silence_errors();  // the main thread first, as in a real run
  TempDir dir;
  const std::string path = dir.file("no_such_dir/w.h5");
  Params out(DType::f32);
  std::string message;
  const std::string printed = user_error_of([&] {
    std::thread worker([&] {
      try {
        write_weights(path, "vit", "type: vit\n", out.list);
      } catch (const UserError& e) {
        message = e.what();
      }
    });
    worker.join();
    throw UserError(message);
  });
  EXPECT_EQ(printed.rfind(path + ".tmp: cannot create file", 0), 0u) << printed;
}

TEST(WeightsFile, OverwritesAnExistingFileAtomically) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  Params first(DType::f32);
  first.fill(1.0);
  write_weights(path, "encoder_decoder", "first\n", first.list);
  Params second(DType::f32);
  second.fill(2.0);
  write_weights(path, "encoder_decoder", "second\n", second.list);
  Params in(DType::f32);
  EXPECT_EQ(read_weights(path, in.list).config, "second\n");
  EXPECT_EQ(in.at(in.norm, 0), static_cast<float>(2.0 + 1.0 / 3.0));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"w.h5"});
}

// The golden files (tests/golden/make_golden.py, written by h5py) must be weights files as
// read_weights understands them: variable-length string attributes, groups beside tensors.
TEST(WeightsFile, ReadsGoldenFiles) {
  for (const char* name : {"encdec_pre.h5", "encdec_post.h5", "vit.h5"}) {
    const std::string path = std::string(TR_GOLDEN_DIR) + "/" + name;
    ASSERT_TRUE(fs::exists(path)) << path << " (run tests/golden/make_golden.py)";
    h5::File file = h5::File::open(path);
    std::vector<Parameter> storage(file.datasets("/").size());
    ParameterList params;
    std::size_t k = 0;
    for (const std::string& tensor : file.datasets("/")) {
      init_parameter(storage[k], tensor, file.shape(tensor), DType::f64, true);
      params.push_back(&storage[k++]);
    }
    ASSERT_GT(params.size(), 10u);
    const WeightsInfo info = read_weights(path, params);
    EXPECT_TRUE(info.model_type == "encoder_decoder" || info.model_type == "vit") << name;
    EXPECT_EQ(info.config.rfind("type: " + info.model_type + "\n", 0), 0u) << info.config;
    const std::vector<float> raw = file.read<float>(params[0]->name);
    for (std::size_t i = 0; i < raw.size(); ++i)
      ASSERT_EQ(params[0]->value.data<double>()[i], static_cast<double>(raw[i]));
    EXPECT_EQ(file.groups("/"), (std::vector<std::string>{"batch", "expected"})) << name;
    // The reference data beside the weights reads through the same wrapper.
    EXPECT_EQ(file.shape("expected/loss"), Shape{});
    EXPECT_EQ(file.read<double>("expected/adamw_losses").size(), 8u);
    EXPECT_EQ(file.datasets("expected/grads"), file.datasets("/"));
    EXPECT_FALSE(file.read_attr_strings("expected", "no_decay").empty());
    EXPECT_EQ(file.read_attr_scalar<std::int64_t>("expected", "steps"), 8);
  }
}

// ---- the HDF5 wrapper --------------------------------------------------------------------------

TEST(H5File, AttributesRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  {
    h5::File file = h5::File::create(path);
    file.write<std::int64_t>("labels", {3}, {4, 5, 6});
    file.write_attr("/", "name", "fashion");
    file.write_attr("/", "name", "fashion-mnist");  // replaces
    file.write_attr("/", "class_names", std::vector<std::string>{"shirt", "", "bag"});
    file.write_attr_scalar<std::int64_t>("/", "num_classes", 10);
    file.write_attr("/", "mean", std::vector<double>{0.25, 0.5});
    file.write_attr_scalar<double>("labels", "scale", 2.5);
    file.close();
  }
  h5::File file = h5::File::open(path);
  EXPECT_EQ(file.read_attr_string("/", "name"), "fashion-mnist");
  EXPECT_EQ(file.read_attr_strings("/", "class_names"),
            (std::vector<std::string>{"shirt", "", "bag"}));
  EXPECT_EQ(file.read_attr_scalar<std::int64_t>("/", "num_classes"), 10);
  EXPECT_EQ(file.read_attr_scalar<double>("/", "num_classes"), 10.0) << "int converts to double";
  EXPECT_EQ(file.read_attr<float>("/", "mean"), (std::vector<float>{0.25f, 0.5f}));
  EXPECT_EQ(file.read_attr_scalar<double>("labels", "scale"), 2.5);
  EXPECT_TRUE(file.has_attr("/", "mean"));
  EXPECT_FALSE(file.has_attr("/", "std"));

  EXPECT_EQ(user_error_of([&] { file.read_attr<double>("/", "std"); }),
            path + ": root attribute 'std' is missing");
  EXPECT_EQ(user_error_of([&] { file.read_attr_scalar<double>("/", "mean"); }),
            path + ": root attribute 'mean' holds 2 values, expected one");
  EXPECT_EQ(user_error_of([&] { file.read_attr<std::int32_t>("/", "mean"); }),
            path + ": root attribute 'mean' holds floating-point values, expected integers");
  EXPECT_EQ(user_error_of([&] { file.read_attr_string("/", "num_classes"); }),
            path + ": root attribute 'num_classes' is not a string");
  EXPECT_EQ(user_error_of([&] { file.read_attr_string("images", "mean"); }),
            path + ": object 'images' is missing");
}

TEST(H5File, DatasetsWholeAndRows) {
  TempDir dir;
  const std::string path = dir.file("d.h5");
  std::vector<std::int32_t> tokens(5 * 3);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(i);
  {
    h5::File file = h5::File::create(path);
    file.write<std::int32_t>("src/tokens", {5, 3}, tokens);
    file.write<std::uint8_t>("tokenizer", {4}, {0, 255, 7, 9});
    file.write<float>("encoder.layers.0.norm1.weight", {2}, {1.5f, -0.25f});
    file.write<double>("loss", {}, {3.25});
    file.close();
  }
  h5::File file = h5::File::open(path);
  EXPECT_TRUE(file.exists("src/tokens"));
  EXPECT_TRUE(file.exists("/src"));
  EXPECT_FALSE(file.exists("src/offsets"));
  EXPECT_FALSE(file.exists("tgt/tokens"));
  EXPECT_FALSE(file.exists("loss/child")) << "a dataset has no children";
  EXPECT_TRUE(file.is_dataset("encoder.layers.0.norm1.weight"));
  EXPECT_FALSE(file.is_dataset("src"));
  EXPECT_TRUE(file.is_group("src"));
  EXPECT_EQ(file.groups("/"), std::vector<std::string>{"src"});
  EXPECT_EQ(file.datasets("/"),
            (std::vector<std::string>{"encoder.layers.0.norm1.weight", "loss", "tokenizer"}));
  EXPECT_EQ(file.datasets("src"), std::vector<std::string>{"tokens"});

  EXPECT_EQ(file.shape("src/tokens"), (Shape{5, 3}));
  EXPECT_EQ(file.shape("loss"), Shape{});
  EXPECT_EQ(file.read<double>("loss"), std::vector<double>{3.25});
  EXPECT_EQ(file.read<std::int32_t>("src/tokens"), tokens);
  EXPECT_EQ(file.read<std::int64_t>("src/tokens")[14], 14) << "i32 converts to i64";
  EXPECT_EQ(file.read<std::uint8_t>("tokenizer"), (std::vector<std::uint8_t>{0, 255, 7, 9}));
  EXPECT_EQ(file.read<double>("encoder.layers.0.norm1.weight"), (std::vector<double>{1.5, -0.25}));
  EXPECT_EQ(file.stored_type("tokenizer").dtype, DType::u8);
  EXPECT_EQ(file.stored_type("src/tokens").dtype, DType::i32);

  EXPECT_EQ(file.read_rows<std::int32_t>("src/tokens", 1, 2),
            (std::vector<std::int32_t>{3, 4, 5, 6, 7, 8}));
  EXPECT_TRUE(file.read_rows<std::int32_t>("src/tokens", 5, 0).empty());
  Tensor rows = Tensor::empty({2, 3}, DType::i64);
  file.read_rows_into("src/tokens", 3, rows);
  EXPECT_EQ(rows.data<std::int64_t>()[0], 9);
  EXPECT_EQ(rows.data<std::int64_t>()[5], 14);
  const Tensor whole = file.read_tensor("encoder.layers.0.norm1.weight", DType::f64);
  EXPECT_EQ(whole.shape(), Shape{2});
  EXPECT_EQ(whole.data<double>()[1], -0.25);

  EXPECT_EQ(user_error_of([&] { file.read_rows<std::int32_t>("src/tokens", 4, 2); }),
            path + ": rows [4, 6) are out of range for dataset 'src/tokens' with 5 rows");
  EXPECT_EQ(user_error_of([&] { file.read<float>("src/offsets"); }),
            path + ": dataset 'src/offsets' is missing");
  EXPECT_EQ(user_error_of([&] { file.read<float>("src"); }), path + ": 'src' is not a dataset");
  EXPECT_EQ(user_error_of([&] { file.read<std::int64_t>("loss"); }),
            path + ": dataset 'loss' holds floating-point values, expected integers");
  EXPECT_EQ(user_error_of([&] { file.read_rows<double>("loss", 0, 1); }),
            path + ": dataset 'loss' is a scalar, it has no rows");
  Tensor wrong = Tensor::empty({3, 5}, DType::i32);
  EXPECT_EQ(user_error_of([&] { file.read_into("src/tokens", wrong); }),
            path + ": dataset 'src/tokens' has shape [5, 3], expected [3, 5]");
  Tensor wrong_rows = Tensor::empty({2, 4}, DType::i32);
  EXPECT_EQ(user_error_of([&] { file.read_rows_into("src/tokens", 0, wrong_rows); }),
            path + ": dataset 'src/tokens' has shape [5, 3], expected [5, 4]");
}

TEST(H5File, ChunkedDatasetWrittenInPieces) {
  // The `prepare` converters write large image arrays batch by batch into a chunked dataset.
  TempDir dir;
  const std::string path = dir.file("images.h5");
  const std::int64_t n = 7, h = 2, w = 3;
  {
    h5::File file = h5::File::create(path);
    file.create_dataset("images", {n, h, w}, DType::u8, {.chunk_rows = 3});
    for (std::int64_t start = 0; start < n; start += 3) {
      const std::int64_t count = std::min<std::int64_t>(3, n - start);
      Tensor piece = Tensor::empty({count, h, w}, DType::u8);
      for (std::int64_t i = 0; i < piece.numel(); ++i)
        piece.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(start * h * w + i);
      file.write_rows("images", start, piece);
    }
    file.create_dataset("empty", {0, 4}, DType::f32, {.chunk_rows = 8});
    file.close();
  }
  h5::File file = h5::File::open(path);
  const std::vector<std::uint8_t> all = file.read<std::uint8_t>("images");
  ASSERT_EQ(all.size(), static_cast<std::size_t>(n * h * w));
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  EXPECT_EQ(file.read_rows<std::uint8_t>("images", 6, 1)[5], 6 * h * w + 5);
  EXPECT_EQ(file.shape("empty"), (Shape{0, 4}));
  EXPECT_TRUE(file.read<float>("empty").empty());
}

TEST(H5File, CreateErrors) {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  h5::File file = h5::File::create(path);
  file.write<float>("x", {1}, {1.0f});
  EXPECT_EQ(user_error_of([&] { file.write<float>("x", {1}, {2.0f}); }),
            path + ": dataset 'x' already exists");
  EXPECT_EQ(user_error_of([&] { file.write<float>("x/y", {1}, {2.0f}); }),
            path + ": 'x' exists and is not a group");
  file.close();
  EXPECT_EQ(user_error_of([&] { h5::File::open(dir.file("")); }),
            dir.file("") + ": is a directory, not an HDF5 file");
}

}  // namespace
}  // namespace tr
