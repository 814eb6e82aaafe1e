// layers/op_profile.h: per-op timing for bench/train_step --profile. Off, a timer records
// nothing and never waits for the device; on, each timer waits before and after (the sync
// callback), accumulates per name, and marks a timer opened inside another as a part (depth 1)
// so that the step's "between ops" sums the outer ops only.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "layers/op_profile.h"

namespace tr {
namespace {

int g_syncs = 0;
void count_sync() {
  ++g_syncs;
}

const op_profile::Entry* find(const std::vector<op_profile::Entry>& entries,
                              const std::string& name) {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

TEST(OpProfile, OffRecordsNothingAndNeverSynchronises) {
  op_profile::reset();
  op_profile::enable(false, count_sync);
  g_syncs = 0;
  { OpTimer t("op"); }
  EXPECT_EQ(g_syncs, 0);
  EXPECT_TRUE(op_profile::totals().empty());
  // On without a way to wait for the device stays off: times would be launch times.
  op_profile::enable(true, nullptr);
  EXPECT_FALSE(op_profile::enabled());
}

TEST(OpProfile, AccumulatesPerNameWithPartsMarked) {
  op_profile::reset();
  op_profile::enable(true, count_sync);
  g_syncs = 0;
  for (int i = 0; i < 3; ++i) {
    OpTimer outer("attention");
    OpTimer part("attention: softmax");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  { OpTimer other("linear"); }
  op_profile::enable(false, nullptr);
  EXPECT_EQ(g_syncs, 2 * 7);  // before and after each of the 7 timers
  const auto totals = op_profile::totals();
  ASSERT_EQ(totals.size(), 3u);
  const op_profile::Entry* outer = find(totals, "attention");
  const op_profile::Entry* part = find(totals, "attention: softmax");
  const op_profile::Entry* other = find(totals, "linear");
  ASSERT_TRUE(outer && part && other);
  EXPECT_EQ(outer->calls, 3);
  EXPECT_EQ(part->calls, 3);
  EXPECT_EQ(other->calls, 1);
  EXPECT_EQ(outer->depth, 0);
  EXPECT_EQ(part->depth, 1);
  EXPECT_EQ(other->depth, 0);
  EXPECT_GE(part->seconds, 0.006);
  EXPECT_GE(outer->seconds, part->seconds);     // the part is inside the op's time
  EXPECT_EQ(totals.front().name, "attention");  // largest first
  op_profile::reset();
  EXPECT_TRUE(op_profile::totals().empty());
}

}  // namespace
}  // namespace tr
