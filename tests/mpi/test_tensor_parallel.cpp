// Tensor-parallel modules and models against the single-process ones, in fp64: the
// vocabulary-parallel embedding and cross entropy (padding included), both models' loss, every
// gradient (each rank's shard equals its slice of the single-process gradient; replicated
// parameters get bitwise identical gradients on every TP rank), dropout masks derived from
// global positions, sharded initialisation, evaluation logits and decoding.
// Run under mpirun -np 2 and 4: tensor-parallel groups of 2 and of the whole world.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "data/h5.h"
#include "layers/cross_entropy.h"
#include "layers/embedding.h"
#include "models/encoder_decoder.h"
#include "mpi/mpi_main.h"
#include "parallel/tensor_parallel_group.h"
#include "trainer/decoding.h"
#include "trainer/model_config_yaml.h"
#include "trainer/weights_file.h"

namespace tr {
namespace {

using testing::g_runtime;

// The TP group sizes to test in this job: 2 and the whole world.
std::vector<int> tp_sizes() {
  const int n = g_runtime->world_size();
  return n > 2 ? std::vector<int>{2, n} : std::vector<int>{n};
}

// A process grid of `tp` x (world / tp) and its tensor-parallel group.
std::unique_ptr<TensorParallel> setup(int tp) {
  g_runtime->setup_grid(tp, g_runtime->world_size() / tp, 120);
  return make_tensor_parallel(g_runtime->tp());
}

std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == DType::f64)
    std::copy_n(t.data<double>(), t.numel(), v.begin());
  else
    std::copy_n(t.data<float>(), t.numel(), v.begin());
  return v;
}

// max |a - b| / max(max |b|, 1e-3)
double rel_error(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  const auto x = values(a), y = values(b);
  double err = 0, scale = 1e-3;
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
    err = std::max(err, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return err / scale;
}

// This rank's part of a full single-process tensor.
Tensor shard_of(const Tensor& full, const Parameter& p) {
  Tensor local = Tensor::empty(p.value.shape(), full.dtype());
  copy_full_to_shard(local, full, p.shard);
  return local;
}

// True when `t` is bitwise the same on every rank of the TP group.
bool same_on_all_ranks(const Tensor& t) {
  Communicator& tp = g_runtime->tp();
  std::vector<double> mine = values(t), hi = mine, lo = mine;
  for (double& x : lo) x = -x;
  tp.all_reduce(hi.data(), static_cast<std::int64_t>(hi.size()), DType::f64, ReduceOp::max);
  tp.all_reduce(lo.data(), static_cast<std::int64_t>(lo.size()), DType::f64, ReduceOp::max);
  bool same = true;
  for (std::size_t i = 0; i < mine.size(); ++i)
    same = same && hi[i] == mine[i] && -lo[i] == mine[i];
  return same;
}

Tensor random_tensor(const Shape& shape, std::uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  Tensor t = Tensor::empty(shape, DType::f64);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = dist(gen);
  return t;
}

Tensor random_ids(std::int64_t n, std::int32_t vocab, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int32_t> dist(0, vocab - 1);
  Tensor t = Tensor::empty({n}, DType::i32);
  for (std::int64_t i = 0; i < n; ++i) t.data<std::int32_t>()[i] = dist(gen);
  return t;
}

// ---- vocabulary-parallel layers -------------------------------------------------------------

TEST(TensorParallel, VocabParallelEmbeddingMatchesPlain) {
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    constexpr std::int64_t V = 99, d = 8, N = 40;  // 99: padded to 100 under TP 2 and 4
    Embedding plain("embed", V, d, DType::f64), sharded("embed", V, d, DType::f64, tp.get());
    plain.weight.value.copy_from(random_tensor({V, d}, 1));
    copy_full_to_shard(sharded.weight.value, plain.weight.value, sharded.weight.shard);
    Tensor ids = random_ids(N, V, 2);
    ids.data<std::int32_t>()[0] = V - 1;  // the last real row, next to the padding
    Tensor a, b;
    plain.forward(a, ids);
    sharded.forward(b, ids);
    EXPECT_LE(rel_error(b, a), 1e-15) << "TP " << tp_n;
    const Tensor dout = random_tensor({N, d}, 3);
    plain.backward_accumulate(ids, dout);
    sharded.backward_accumulate(ids, dout);
    EXPECT_LE(rel_error(sharded.weight.grad, shard_of(plain.weight.grad, sharded.weight)), 1e-15);
    // Padding rows stay without gradient.
    const TpShard& s = sharded.weight.shard;
    for (std::int64_t r = s.extent; r < sharded.weight.grad.dim(0); ++r)
      for (std::int64_t c = 0; c < d; ++c)
        EXPECT_EQ(sharded.weight.grad.data<double>()[r * d + c], 0);
  }
}

TEST(TensorParallel, VocabParallelCrossEntropyMatchesPlain) {
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    constexpr std::int64_t V = 99, N = 30;
    constexpr std::int32_t kPad = 0;
    const Tensor logits = random_tensor({N, V}, 4, 3.0);
    Tensor targets = random_ids(N, V, 5);
    targets.data<std::int32_t>()[1] = kPad;  // ignored rows
    targets.data<std::int32_t>()[7] = kPad;
    targets.data<std::int32_t>()[2] = V - 1;
    CrossEntropy plain(0.1, kPad);
    const double expected = plain.forward(logits, targets);
    const Tensor dexpected = plain.backward(0.25).clone();

    const DimSplit split = split_dim(V, tp->rank(), tp->size());
    CrossEntropy sharded(0.1, kPad, VocabShard{tp.get(), V, split.offset, split.extent});
    // This rank's columns; padding columns get large values, which must not count.
    Tensor local = Tensor::empty({N, split.local}, DType::f64);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < split.local; ++c)
        local.data<double>()[n * split.local + c] =
            c < split.extent ? logits.data<double>()[n * V + split.offset + c] : 1e3;
    const double loss = sharded.forward(local, targets);
    EXPECT_LE(std::abs(loss - expected) / std::abs(expected), 1e-14) << "TP " << tp_n;
    EXPECT_EQ(sharded.counted_rows(), plain.counted_rows());
    const Tensor dlocal = sharded.backward(0.25);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < split.local; ++c) {
        const double got = dlocal.data<double>()[n * split.local + c];
        const double want =
            c < split.extent ? dexpected.data<double>()[n * V + split.offset + c] : 0;
        EXPECT_NEAR(got, want, 1e-15) << "row " << n << " column " << c;
      }
  }
}

// ---- whole models ---------------------------------------------------------------------------

struct Golden {
  ModelConfig config;
  double smoothing = 0;
  std::string path;
  Batch batch;
};

Golden load_golden(const std::string& name) {
  Golden g;
  g.path = std::string(TR_GOLDEN_DIR) + "/" + name + ".h5";
  h5::File file = h5::File::open(g.path);
  g.config = model_config_from_yaml_text(file.read_attr_string("/", "config"), g.path);
  g.smoothing = file.read_attr_scalar<double>("/expected", "label_smoothing");
  if (g.config.type == "vit") {
    g.batch.images = file.read_tensor("/batch/images", DType::f64);
    g.batch.labels = file.read_tensor("/batch/labels", DType::i32);
  } else {
    g.batch.src = file.read_tensor("/batch/src", DType::i32);
    g.batch.src_len = file.read_tensor("/batch/src_len", DType::i32);
    g.batch.tgt_in = file.read_tensor("/batch/tgt_in", DType::i32);
    g.batch.tgt_out = file.read_tensor("/batch/tgt_out", DType::i32);
    g.batch.tgt_len = file.read_tensor("/batch/tgt_len", DType::i32);
  }
  return g;
}

// The golden model (its weights, or seeded weights when the config had to change to be split
// 4 ways: the ViT has 2 heads) built whole and as this rank's shard.
struct Pair {
  std::unique_ptr<Model> whole, shard;
};

Pair make_pair(Golden& g, TensorParallel* tp, double dropout = 0) {
  const bool use_file = g.config.heads % tp->size() == 0;
  ModelConfig c = g.config;
  if (!use_file) c.heads = tp->size();
  c.dropout = dropout;
  Pair p{make_model(c, DType::f64, g.smoothing, 11),
         make_model(c, DType::f64, g.smoothing, 11, tp)};
  if (use_file) {
    read_weights(g.path, p.whole->parameters());
    read_weights(g.path, p.shard->parameters());
  }
  return p;
}

void expect_same_model_step(Golden& g, TensorParallel* tp, const ForwardContext& ctx,
                            double dropout) {
  Pair m = make_pair(g, tp, dropout);
  const auto& whole = m.whole->parameters();
  const auto& shard = m.shard->parameters();
  ASSERT_EQ(whole.size(), shard.size());
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(whole[i]->name, shard[i]->name);
    EXPECT_EQ(shard[i]->full_shape(), whole[i]->value.shape()) << shard[i]->name;
    EXPECT_LE(rel_error(shard[i]->value, shard_of(whole[i]->value, *shard[i])), 0)
        << shard[i]->name;
  }
  const double a = m.whole->forward(g.batch, ctx), b = m.shard->forward(g.batch, ctx);
  EXPECT_LE(std::abs(a - b) / std::abs(a), 1e-12) << "TP " << tp->size();
  EXPECT_EQ(m.whole->counted_targets(), m.shard->counted_targets());
  const double scale = 1.0 / static_cast<double>(m.whole->counted_targets());
  m.whole->zero_grad();
  m.shard->zero_grad();
  m.whole->backward(scale);
  m.shard->backward(scale);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    const Parameter& p = *shard[i];
    EXPECT_LE(rel_error(p.grad, shard_of(whole[i]->grad, p)), 1e-10)
        << p.name << " TP " << tp->size();
    if (!p.sharded()) {
      EXPECT_TRUE(same_on_all_ranks(p.grad)) << p.name << " differs across TP";
    }
  }
}

class ModelTensorParallel : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelTensorParallel, LossAndGradientsMatchSingleProcess) {
  Golden g = load_golden(GetParam());
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    ForwardContext train{true, 7, 3, 0};
    expect_same_model_step(g, tp.get(), train, 0.0);
  }
}

// Dropout masks are keyed by global positions: replicated activations get the same mask on
// every rank, each rank's heads exactly their part of the whole layer's mask. So even with
// dropout the tensor-parallel step equals the single-process step.
TEST_P(ModelTensorParallel, DropoutMatchesSingleProcess) {
  Golden g = load_golden(GetParam());
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    ForwardContext train{true, 7, 5, 16};
    expect_same_model_step(g, tp.get(), train, 0.3);
  }
}

TEST_P(ModelTensorParallel, EvaluationLogitsAreWhole) {
  Golden g = load_golden(GetParam());
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    Pair m = make_pair(g, tp.get());
    const double a = m.whole->forward(g.batch, ForwardContext{});
    const double b = m.shard->forward(g.batch, ForwardContext{});
    EXPECT_LE(std::abs(a - b) / std::abs(a), 1e-12);
    EXPECT_LE(rel_error(m.shard->logits(), m.whole->logits()), 1e-12) << "TP " << tp_n;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, ModelTensorParallel,
                         ::testing::Values("encdec_pre", "encdec_post", "vit"));

// The tanh GELU's fused feed-forward ops split as the others: fc1 column-parallel with its GELU
// and pre-activation per rank, fc2's input gradient carried back through it on each rank's
// hidden units.
TEST(TensorParallel, GeluTanhModelsMatchSingleProcess) {
  for (const char* name : {"encdec_post", "vit"}) {
    Golden g = load_golden(name);
    g.config.activation = "gelu_tanh";
    for (int tp_n : tp_sizes()) {
      auto tp = setup(tp_n);
      expect_same_model_step(g, tp.get(), ForwardContext{true, 7, 5, 16}, 0.3);
    }
  }
}

TEST(TensorParallel, SeededInitialisationIsTheSlice) {
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    Golden g = load_golden("encdec_post");
    ModelConfig c = g.config;
    c.vocab_size = 99;
    auto whole = make_model(c, DType::f32, 0.0, 3);
    auto shard = make_model(c, DType::f32, 0.0, 3, tp.get());
    for (std::size_t i = 0; i < whole->parameters().size(); ++i) {
      const Parameter& p = *shard->parameters()[i];
      EXPECT_EQ(rel_error(p.value, shard_of(whole->parameters()[i]->value, p)), 0) << p.name;
    }
  }
}

TEST(TensorParallel, DecodingMatchesSingleProcess) {
  Golden g = load_golden("encdec_pre");
  for (int tp_n : tp_sizes()) {
    auto tp = setup(tp_n);
    Pair m = make_pair(g, tp.get());
    for (int beam : {1, 3}) {
      DecodeOptions o;
      o.beam = beam;
      const auto a = translate_batch(static_cast<EncoderDecoder&>(*m.whole), g.batch, o);
      const auto b = translate_batch(static_cast<EncoderDecoder&>(*m.shard), g.batch, o);
      EXPECT_EQ(a, b) << "TP " << tp_n << " beam " << beam;
    }
  }
}

TEST(TensorParallel, IndivisibleHeadsOrFfnAreUserErrors) {
  Golden g = load_golden("encdec_pre");  // 4 heads, d_ff 24
  auto message = [&](ModelConfig c, int tp) {
    try {
      validate_tensor_parallel(c, tp);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message(g.config, 3), "model.heads: 4 is not divisible by parallel.tensor 3");
  ModelConfig c = g.config;
  c.d_ff = 30;
  EXPECT_EQ(message(c, 4), "model.d_ff: 30 is not divisible by parallel.tensor 4");
  EXPECT_EQ(message(g.config, 4), "");
}

}  // namespace
}  // namespace tr

TR_MPI_TEST_MAIN
