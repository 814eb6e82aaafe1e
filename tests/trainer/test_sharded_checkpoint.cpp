// Checkpoint files of tensor-parallel layouts, without MPI: the ranks of a layout are built
// side by side in one process (init_sharded_parameter takes the rank), write their files into
// one checkpoint directory, and another layout reads them back. Model files, per-parameter
// optimizer files and ZeRO-1 shards, with a vocabulary that the group does not divide.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <random>

#include "parallel/communicator.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer_checkpoint.h"
#include "trainer/shard_io.h"
#include "trainer/weights_file.h"

namespace tr {
namespace {

namespace fs = std::filesystem;

fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("tr_sharded_" + std::to_string(::getpid()) + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A miniature model as one tensor-parallel rank holds it: a vocabulary-parallel table (37 rows,
// padded), a row-parallel weight, a column-parallel bias and a replicated norm.
struct RankModel {
  RankModel(int rank, int ranks) {
    auto split = [&](Parameter& p, const std::string& name, const Shape& full, int axis) {
      if (ranks == 1)
        init_parameter(p, name, full, DType::f32, true);
      else
        init_sharded_parameter(p, name, full, axis, rank, ranks, DType::f32, true);
    };
    split(embed, "embed.weight", {37, 4}, 0);
    split(o_proj, "attn.o_proj.weight", {4, 8}, 1);
    split(q_bias, "attn.q_proj.bias", {8}, 0);
    init_parameter(norm, "norm.weight", {4}, DType::f32, false);
    list = {&embed, &o_proj, &q_bias, &norm};
  }
  Parameter embed, o_proj, q_bias, norm;
  ParameterList list;
};

Tensor full_values(const Parameter& p, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  Tensor t = Tensor::empty(p.full_shape(), DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

// The layout's ranks, each holding its slice of the same full values (seeded per name).
std::vector<std::unique_ptr<RankModel>> layout(int ranks) {
  std::vector<std::unique_ptr<RankModel>> models;
  for (int r = 0; r < ranks; ++r) {
    models.push_back(std::make_unique<RankModel>(r, ranks));
    std::uint32_t seed = 1;
    for (Parameter* p : models.back()->list)
      copy_full_to_shard(p->value, full_values(*p, seed++), p->shard);
  }
  return models;
}

void expect_slices_of_full(const RankModel& m, const std::string& label) {
  std::uint32_t seed = 1;
  for (const Parameter* p : m.list) {
    Tensor expected = Tensor::empty(p->value.shape(), DType::f32);
    copy_full_to_shard(expected, full_values(*p, seed++), p->shard);
    for (std::int64_t i = 0; i < expected.numel(); ++i)
      ASSERT_EQ(p->value.data<float>()[i], expected.data<float>()[i])
          << label << " " << p->name << " element " << i;
  }
}

CheckpointMeta meta() {
  CheckpointMeta m;
  m.model_type = "encoder_decoder";
  m.model_yaml = "type: encoder_decoder\n";
  return m;
}

TEST(ShardedCheckpoint, ModelFilesLoadUnderAnyLayout) {
  const fs::path dir = scratch();
  const auto writers = layout(2);
  for (int r = 0; r < 2; ++r) write_model_shard(dir.string(), meta(), writers[r]->list, r, 2);
  for (int ranks : {1, 3, 4}) {
    for (int r = 0; r < ranks; ++r) {
      RankModel reader(r, ranks);
      load_checkpoint(dir.string(), reader.list, nullptr);
      expect_slices_of_full(reader, "TP2 -> TP" + std::to_string(ranks));
      // Padding rows of the vocabulary stay zero.
      const TpShard& s = reader.embed.shard;
      for (std::int64_t i = s.extent * 4; reader.embed.sharded() && i < reader.embed.value.numel();
           ++i)
        EXPECT_EQ(reader.embed.value.data<float>()[i], 0.0f);
    }
  }
  // TP rank 0's file holds the replicated tensor and slices with their place in the whole.
  h5::File f = h5::File::open((dir / "model_tp01.h5").string());
  EXPECT_FALSE(f.is_dataset("norm.weight"));
  EXPECT_EQ(f.shape("embed.weight"), (Shape{18, 4}));  // rows 19..36, padding dropped
  EXPECT_EQ(f.read_attr_scalar<std::int64_t>("embed.weight", "offset"), 19);
  EXPECT_EQ(f.read_attr<std::int64_t>("embed.weight", "global_shape"),
            (std::vector<std::int64_t>{37, 4}));
  EXPECT_EQ(f.read_attr_scalar<std::int64_t>("attn.o_proj.weight", "split_axis"), 1);
}

TEST(ShardedCheckpoint, SingleRankModelFileIsAWeightsFile) {
  const fs::path dir = scratch();
  const auto writers = layout(1);
  write_model_shard(dir.string(), meta(), writers[0]->list, 0, 1);
  RankModel reader(1, 2);
  read_weights((dir / "model_tp00.h5").string(), reader.list);
  expect_slices_of_full(reader, "weights file -> TP2 rank 1");
}

TEST(ShardedCheckpoint, MissingShardIsNamed) {
  const fs::path dir = scratch();
  const auto writers = layout(4);
  for (int r = 0; r < 4; ++r) write_model_shard(dir.string(), meta(), writers[r]->list, r, 4);
  fs::remove(dir / "model_tp02.h5");
  RankModel reader(0, 1);
  try {
    load_checkpoint(dir.string(), reader.list, nullptr);
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("a shard file is missing"), std::string::npos) << e.what();
  }
}

// Optimizer state, per parameter (AdamW per TP rank) and ZeRO-1 (flat shards per TP rank),
// read back by other layouts in either form.
void set_state(Tensor& t, const Parameter& p, std::uint32_t seed) {
  copy_full_to_shard(t, full_values(p, seed), p.shard);
}

void expect_state(const Tensor& t, const Parameter& p, std::uint32_t seed,
                  const std::string& label) {
  Tensor expected = Tensor::empty(t.shape(), DType::f32);
  copy_full_to_shard(expected, full_values(p, seed), p.shard);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    ASSERT_EQ(t.data<float>()[i], expected.data<float>()[i]) << label << " " << p.name;
}

TEST(ShardedCheckpoint, OptimizerStateLoadsUnderAnyLayoutAndForm) {
  const AdamWConfig config;
  auto dp = make_single_process_communicator("dp");
  for (const bool zero_written : {false, true}) {
    const fs::path dir = scratch() / (zero_written ? "zero" : "plain");
    fs::create_directories(dir);
    auto writers = layout(2);
    for (int r = 0; r < 2; ++r) {
      const ParameterList& params = writers[r]->list;
      if (zero_written) {
        ShardedAdamW opt(params, config, *dp);
        // The flat moments of this TP rank's local parameters, in order.
        std::int64_t offset = 0;
        std::uint32_t seed = 10;
        for (const Parameter* p : params) {
          Tensor m = Tensor::empty(p->value.shape(), DType::f32);
          Tensor v = Tensor::empty(p->value.shape(), DType::f32);
          set_state(m, *p, seed);
          set_state(v, *p, seed + 100);
          std::copy_n(m.data<float>(), m.numel(), opt.exp_avg().data<float>() + offset);
          std::copy_n(v.data<float>(), v.numel(), opt.exp_avg_sq().data<float>() + offset);
          offset += m.numel();
          ++seed;
        }
        opt.set_step_count(7);
        write_optimizer_shard(dir.string(), r, 2, 0, opt);
      } else {
        AdamW opt(params, config);
        for (std::size_t i = 0; i < params.size(); ++i) {
          set_state(opt.state(i, "exp_avg"), *params[i], 10 + static_cast<std::uint32_t>(i));
          set_state(opt.state(i, "exp_avg_sq"), *params[i], 110 + static_cast<std::uint32_t>(i));
        }
        opt.set_step_count(7);
        write_optimizer_file(dir.string(), r, 2, opt);
      }
    }
    const std::string form = zero_written ? "ZeRO-1 TP2" : "per-parameter TP2";
    for (int ranks : {1, 4}) {
      for (int r = 0; r < ranks; ++r) {
        RankModel reader(r, ranks);
        AdamW opt(reader.list, config);
        load_optimizer_state(dir.string(), opt);
        EXPECT_EQ(opt.step_count(), 7);
        for (std::size_t i = 0; i < reader.list.size(); ++i) {
          const auto seed = static_cast<std::uint32_t>(i);
          expect_state(opt.state(i, "exp_avg"), *reader.list[i], 10 + seed, form);
          expect_state(opt.state(i, "exp_avg_sq"), *reader.list[i], 110 + seed, form);
        }
        ShardedAdamW sharded(reader.list, config, *dp);
        load_optimizer_shard(dir.string(), sharded);
        EXPECT_EQ(sharded.step_count(), 7);
        std::int64_t offset = 0;
        for (std::size_t i = 0; i < reader.list.size(); ++i) {
          const Parameter& p = *reader.list[i];
          Tensor m = Tensor::empty(p.value.shape(), DType::f32);
          std::copy_n(sharded.exp_avg().data<float>() + offset, m.numel(), m.data<float>());
          expect_state(m, p, 10 + static_cast<std::uint32_t>(i), form + " -> ZeRO-1");
          offset += m.numel();
        }
      }
    }
  }
}

}  // namespace
}  // namespace tr
