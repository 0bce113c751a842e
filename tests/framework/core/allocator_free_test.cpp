// The allocator's free path never allocates: tensors are freed by destructors, where a
// std::bad_alloc would end the program ("terminate called"). This binary replaces the global
// operator new with one that counts calls and can be told to fail.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "framework/core/allocator.h"
#include "framework/core/tensor.h"

namespace {
std::atomic<long> g_news{0};
std::atomic<bool> g_fail{false};
}  // namespace

void* operator new(std::size_t n) {
  ++g_news;
  if (g_fail) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace strand {
namespace {

// Operator new fails while one of these lives; the count of attempted calls is kept.
struct NoHeap {
  long before = g_news;
  NoHeap() { g_fail = true; }
  ~NoHeap() { g_fail = false; }
  long calls() const { return g_news - before; }
};

TEST(AllocatorFree, ReturningBlocksCallsNoOperatorNew) {
  // Many blocks of a few size classes, freed in an order unlike their allocation.
  std::vector<std::pair<void*, size_t>> blocks;
  for (int i = 0; i < 3000; ++i) {
    const size_t n = (i % 3 == 0) ? 100 : (i % 3 == 1) ? 5000 : (2u << 20);
    blocks.emplace_back(memory::allocate(Device::cpu(), n), n);
  }
  const memory::Stats live = memory::stats(Device::cpu());
  long calls = 0;
  {
    NoHeap no_heap;
    for (size_t i = 0; i < blocks.size(); i += 2) memory::deallocate(Device::cpu(), blocks[i].first, blocks[i].second);
    for (size_t i = 1; i < blocks.size(); i += 2) memory::deallocate(Device::cpu(), blocks[i].first, blocks[i].second);
    calls = no_heap.calls();
  }
  EXPECT_EQ(calls, 0) << "deallocate called operator new";
  const memory::Stats freed = memory::stats(Device::cpu());
  EXPECT_EQ(live.current_bytes - freed.current_bytes, 1000 * (512 + 5120 + (2 << 20)));

  // The cached blocks come back, and emptying the cache keeps the room for blocks in use.
  void* again = memory::allocate(Device::cpu(), 5000);
  memory::empty_cache(Device::cpu());
  {
    NoHeap no_heap;
    memory::deallocate(Device::cpu(), again, 5000);
    EXPECT_EQ(no_heap.calls(), 0);
  }
}

TEST(AllocatorFree, TensorsDieWithoutHeapMemory) {
  // Dropping the last handles of many tensors while every allocation fails: no throw, no
  // terminate, and their bytes are accounted as free.
  const int64_t before = memory::stats(Device::cpu()).current_bytes;
  auto tensors = std::make_unique<std::vector<Tensor>>();
  for (int i = 0; i < 500; ++i) tensors->push_back(Tensor::zeros({16 + i % 7, 33}, DType::F32));
  std::vector<Tensor>* raw = tensors.release();
  {
    NoHeap no_heap;
    raw->clear();  // the storages are freed here
  }
  delete raw;
  EXPECT_EQ(memory::stats(Device::cpu()).current_bytes, before);
}

}  // namespace
}  // namespace strand
