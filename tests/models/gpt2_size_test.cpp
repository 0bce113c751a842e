// The gpt2-124m shape (V 50257, T 1024, C 768, 12 layers, 12 heads) builds with GPT-2's exact
// parameter count; a binary of its own because drawing 124M initial weights takes seconds.
#include <gtest/gtest.h>

#include "models/gpt/gpt.h"

namespace strand {
namespace {

TEST(Gpt2Small, Has124439808Parameters) {
  config::ModelConfig c;  // the defaults are GPT-2 small: V 50257, T 1024, C 768, 12 layers, 12 heads
  c.d_ff = 0;
  c.n_kv_head = 0;
  models::Gpt gpt(c, 1337);
  EXPECT_EQ(gpt.parameter_count(), 124439808);
  EXPECT_EQ(gpt.named_parameters().size(), 2u + 12u * 12u + 2u);
}

}  // namespace
}  // namespace strand
