// A weights file that does not fit the model ends the trainer with exit code 2 and one line
// naming the tensor; a good one is accepted.
#include <gtest/gtest.h>

#include "data/h5.h"
#include "e2e/cli_runner.h"

namespace tr {
namespace {

using testing::count_lines;
using testing::run_trainer;
using testing::scratch_dir;

class WeightsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    good_ = (dir_ / "good.h5").string();
    auto r = run_trainer("smoke --steps 2 --batch 4 --log-every 1 --save " + good_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Copies the good file, leaving out `drop` and rewriting `reshape` with a wrong shape.
  std::string variant(const std::string& name, const std::string& drop,
                      const std::string& reshape) {
    const std::string path = (dir_ / name).string();
    h5::File in = h5::File::open(good_);
    h5::File out = h5::File::create(path);
    out.write_attr("/", "model_type", in.read_attr_string("/", "model_type"));
    out.write_attr("/", "config", in.read_attr_string("/", "config"));
    for (const std::string& dataset : in.datasets("/")) {
      if (dataset == drop) continue;
      Tensor t = in.read_tensor(dataset, DType::f32);
      if (dataset == reshape) t = Tensor::zeros({t.numel() + 1}, DType::f32);
      out.write(dataset, t);
    }
    out.close();
    return path;
  }

  std::filesystem::path dir_;
  std::string good_;
};

TEST_F(WeightsCli, GoodFileIsAccepted) {
  auto r = run_trainer("smoke --steps 1 --batch 4 --init " + good_);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(WeightsCli, MissingTensorIsExitTwoNamingIt) {
  const std::string bad = variant("missing.h5", "encoder.layers.1.ffn.fc2.weight", "");
  auto r = run_trainer("smoke --steps 1 --batch 4 --init " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("encoder.layers.1.ffn.fc2.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
}

TEST_F(WeightsCli, WrongShapeIsExitTwoNamingIt) {
  const std::string bad = variant("shape.h5", "", "head.weight");
  auto r = run_trainer("smoke --steps 1 --batch 4 --init " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("head.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shape"), std::string::npos) << r.output;
}

TEST_F(WeightsCli, NotAnHdf5FileIsExitTwo) {
  const std::string bad = (dir_ / "garbage.h5").string();
  FILE* f = fopen(bad.c_str(), "w");
  fputs("not hdf5 at all", f);
  fclose(f);
  auto r = run_trainer("smoke --steps 1 --batch 4 --init " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("garbage.h5"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tr
