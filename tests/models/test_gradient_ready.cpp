// The gradient-ready hook (Model::set_gradient_ready_hook) that lets data-parallel all-reduces
// start during backward: every parameter is reported exactly once, only once its gradient is
// final (a gradient still changing after the report would be all-reduced stale), and most
// parameters are reported before backward ends (otherwise nothing overlaps).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "common/tiny_models.h"
#include "models/model.h"
#include "trainer/synthetic_data.h"

namespace tr {
namespace {

// Three layers a stack, so that the order of reports across layers is visible.
ModelConfig translation(const std::string& norm, bool shared, const std::string& positional) {
  return testing::tiny_translation(norm, shared, "relu", positional, 3);
}
ModelConfig vit() {
  return testing::tiny_vit(3, 1);
}

void check_reports(const ModelConfig& config) {
  auto model = make_model(config, DType::f32, 0.1, 5);
  Batch batch;
  if (config.type == "vit")
    synthetic_image_batch(batch, config, 4, 9, 0, DType::f32);
  else
    synthetic_copy_batch(batch, config, 4, 5, 9, 0);
  model->zero_grad();
  const ForwardContext ctx{true, 17, 2, 0};
  const double loss = model->forward(batch, ctx);
  ASSERT_TRUE(std::isfinite(loss));

  std::map<const Parameter*, Tensor> snapshot;  // gradient at the moment of the report
  std::vector<const Parameter*> order;
  model->set_gradient_ready_hook([&](Parameter* p) {
    EXPECT_TRUE(snapshot.emplace(p, p->grad.clone()).second) << p->name << " reported twice";
    order.push_back(p);
  });
  model->backward(1.0 / static_cast<double>(model->counted_targets()));
  model->set_gradient_ready_hook(nullptr);

  const auto& params = model->parameters();
  ASSERT_EQ(snapshot.size(), params.size());
  double total = 0;
  for (const Parameter* p : params) {
    const Tensor& early = snapshot.at(p);
    EXPECT_EQ(std::memcmp(early.raw(), p->grad.raw(), p->grad.bytes()), 0)
        << p->name << " changed after it was reported final";
    for (std::int64_t i = 0; i < p->grad.numel(); ++i) total += std::abs(p->grad.data<float>()[i]);
  }
  EXPECT_GT(total, 0.0);
  // Output side first: the first report is not an embedding, and the three layers of the last
  // stack are reported before any of the first stack.
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.front()->name.find("embed"), std::string::npos) << order.front()->name;
  const std::string last_stack = config.type == "vit" ? "encoder.layers.2." : "decoder.layers.2.";
  const std::string first_stack = "encoder.layers.0.";
  std::size_t first_last = order.size(), first_first = order.size();
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (first_last == order.size() && order[i]->name.rfind(last_stack, 0) == 0) first_last = i;
    if (first_first == order.size() && order[i]->name.rfind(first_stack, 0) == 0) first_first = i;
  }
  EXPECT_LT(first_last, first_first);

  // Without a hook nothing is reported and a second backward works as before.
  model->zero_grad();
  model->forward(batch, ctx);
  model->backward(1.0);
}

TEST(GradientReady, PreLnSharedSinusoidal) {
  check_reports(translation("pre", true, "sinusoidal"));
}
TEST(GradientReady, PostLnSeparateLearned) {
  check_reports(translation("post", false, "learned"));
}
TEST(GradientReady, ViT) {
  check_reports(vit());
}

}  // namespace
}  // namespace tr
