// The buffer pool behind every tensor: blocks of sixteenth-octave size classes; released blocks
// are taken again by requests of their size class or up to half as large again (ragged
// batches), not by much smaller ones; a miss
// while more than 256 MiB is cached frees the blocks that sat unused through 4096 requests
// and keeps the recently released ones; memory that cannot be had is an OutOfMemory.
#include <gtest/gtest.h>

#include <string>
#include <type_traits>

#include "layers/tensor.h"

namespace tr {
namespace {

constexpr std::int64_t kMiB = 1 << 20;

Tensor bytes_tensor(std::int64_t bytes) {
  return Tensor::empty({bytes}, DType::u8);
}

TEST(BufferPool, NearbySizesReuseAReleasedBlock) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  pool.trim();
  { Tensor t = bytes_tensor(4 * kMiB); }
  const std::int64_t before = pool.system_allocations();
  {
    Tensor t = bytes_tensor(3 * kMiB);  // 3/4 of the block: taken
    EXPECT_EQ(pool.system_allocations(), before);
    EXPECT_EQ(t.capacity(), static_cast<std::size_t>(4 * kMiB));
  }
  { Tensor t = bytes_tensor(2 * kMiB); }  // half: its own block
  EXPECT_EQ(pool.system_allocations(), before + 1);
  {
    // Both cached: the exact class is preferred over the larger block.
    Tensor t = bytes_tensor(2 * kMiB);
    EXPECT_EQ(t.capacity(), static_cast<std::size_t>(2 * kMiB));
  }
  EXPECT_EQ(pool.system_allocations(), before + 1);
  pool.trim();
}

// Size classes are sixteenths of an octave: a fresh block holds under 6.25% more than its
// tensor asked for. The pool counts both, and both peaks.
TEST(BufferPool, BlocksHoldLittleMoreThanAskedAndBothAreCounted) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  pool.trim();
  pool.reset_peak();
  const std::size_t held_before = pool.in_use_bytes();
  const std::size_t asked_before = pool.peak_requested_bytes();
  // Growing sizes, the cache emptied between them: each gets a fresh block of its own class.
  for (const std::int64_t bytes :
       {4 * kMiB + 1, 5 * kMiB + 12345, 7 * kMiB + 999, 100 * kMiB + 1}) {
    {
      Tensor t = bytes_tensor(bytes);
      const std::size_t block = t.capacity();
      EXPECT_GE(block, static_cast<std::size_t>(bytes));
      EXPECT_LT(static_cast<double>(block), 1.0625 * static_cast<double>(bytes)) << bytes;
      EXPECT_EQ(pool.in_use_bytes(), held_before + block);
      EXPECT_EQ(pool.peak_requested_bytes(), asked_before + static_cast<std::size_t>(bytes));
      EXPECT_GE(pool.peak_in_use_bytes(), held_before + block);
    }
    pool.trim();
  }
  EXPECT_EQ(pool.in_use_bytes(), held_before);
  pool.reset_peak();
  EXPECT_EQ(pool.peak_requested_bytes(), asked_before);
}

TEST(BufferPool, AMissOverTheCacheLimitFreesOnlyStaleBlocks) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  pool.trim();
  { Tensor stale = bytes_tensor(300 * kMiB); }  // never touched: no pages behind it
  { Tensor fresh = bytes_tensor(8 * kMiB); }    // cached while nothing is stale yet
  for (int i = 0; i < 5000; ++i) Tensor small = bytes_tensor(64);
  { Tensor fresh = bytes_tensor(8 * kMiB); }  // taken and released again: fresh
  const std::size_t cached = pool.cached_bytes();
  ASSERT_GE(cached, static_cast<std::size_t>(308 * kMiB));
  { Tensor miss = bytes_tensor(kMiB); }  // a size nobody cached
  // The 300 MiB block went; the 8 MiB one released a moment ago stayed.
  EXPECT_LT(pool.cached_bytes(), cached - 299 * kMiB);
  EXPECT_GE(pool.cached_bytes(), static_cast<std::size_t>(9 * kMiB));
  const std::int64_t before = pool.system_allocations();
  { Tensor again = bytes_tensor(8 * kMiB); }
  EXPECT_EQ(pool.system_allocations(), before);
  pool.trim();
}

TEST(BufferPool, RecentBlocksStayWhenNothingIsStale) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  pool.trim();
  { Tensor big = bytes_tensor(300 * kMiB); }  // released just now: not stale
  { Tensor miss = bytes_tensor(kMiB); }
  EXPECT_GE(pool.cached_bytes(), static_cast<std::size_t>(300 * kMiB));
  pool.trim();
  EXPECT_EQ(pool.cached_bytes(), 0u);
}

// Memory that cannot be had even after the cache is given back ends as an OutOfMemory (a
// RunFailure: exit 3) that says how much was asked and held and what to change, and the pool's
// count is as before. 2^60 bytes: beyond any address space, whatever the overcommit setting.
TEST(BufferPool, OutOfMemoryNamesTheSizesAndTheRemedies) {
  BufferPool& pool = BufferPool::instance(Device::cpu);
  const Tensor held = Tensor::empty({1 << 20}, DType::f32);
  const std::size_t before = pool.in_use_bytes();
  try {
    Tensor huge = Tensor::empty({std::int64_t{1} << 58}, DType::f32);
    FAIL() << "2^60 bytes were allocated";
  } catch (const OutOfMemory& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("out of host memory: 10737418", 0), 0u) << message;  // 2^30 GiB
    EXPECT_NE(message.find("GiB more requested"), std::string::npos) << message;
    EXPECT_NE(message.find("train.micro_batch"), std::string::npos) << message;
    EXPECT_NE(message.find("train.recompute"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;  // one line
  }
  EXPECT_EQ(pool.in_use_bytes(), before);
  static_assert(std::is_base_of_v<RunFailure, OutOfMemory>, "exit 3, as other run failures");
}

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer (launch/sanitize) the pool's blocks are as precise as malloc's: the
// bytes past a tensor's size (its block is of a larger size class) and a block waiting in the
// pool are unaddressable, while a tensor grown back within its block by ensure_shape is not.
float read_volatile(const float* p) {
  return *static_cast<const volatile float*>(p);
}

TEST(BufferPoolUnderAddressSanitizer, ReadingPastATensorsEndIsReported) {
  Tensor t = Tensor::empty({1000}, DType::f32);  // 4000 bytes in a block of 4032
  ASSERT_GT(t.capacity(), t.bytes());
  t.data<float>()[999] = 1.0f;
  EXPECT_EQ(read_volatile(t.data<float>() + 999), 1.0f);
  EXPECT_DEATH(read_volatile(t.data<float>() + 1000), "AddressSanitizer");
}

TEST(BufferPoolUnderAddressSanitizer, ReadingAReleasedTensorIsReported) {
  const float* stale = nullptr;
  {
    const Tensor t = Tensor::empty({1000}, DType::f32);
    stale = t.data<float>();
  }
  EXPECT_DEATH(read_volatile(stale), "AddressSanitizer");
}

TEST(BufferPoolUnderAddressSanitizer, ATensorGrownWithinItsBlockIsAddressable) {
  Tensor t = Tensor::empty({1000}, DType::f32);
  ensure_shape(t, {10}, DType::f32);
  ensure_shape(t, {1008}, DType::f32);  // the whole block
  t.data<float>()[1007] = 1.0f;
  EXPECT_EQ(read_volatile(t.data<float>() + 1007), 1.0f);
}
#endif

}  // namespace
}  // namespace tr
