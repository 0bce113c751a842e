// printable() (the form of file bytes in error lines) and edit_distance() (did-you-mean).
#include "framework/core/text.h"

#include <gtest/gtest.h>

#include <string>

namespace strand {
namespace {

TEST(Printable, EscapesControlBytesAndBrokenUtf8KeepsTheRest) {
  EXPECT_EQ(printable("plain text, 1.5e-3 (ok)"), "plain text, 1.5e-3 (ok)");
  EXPECT_EQ(printable("a\nb\tc\x1b[31m\x7f"), "a\\x0ab\\x09c\\x1b[31m\\x7f");
  EXPECT_EQ(printable(std::string("nul\0!", 5)), "nul\\x00!");
  // Well-formed UTF-8 of 2, 3 and 4 bytes passes; a lone continuation, a truncated sequence,
  // an overlong form and a surrogate do not.
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x88\x9e \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x88\x9e \xf0\x9f\x98\x80");
  EXPECT_EQ(printable("\x80"), "\\x80");
  EXPECT_EQ(printable("\xe2\x88"), "\\xe2\\x88");
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");
}

TEST(EditDistance, CountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("n_heads", "n_head"), 1u);
  EXPECT_EQ(edit_distance("prepar", "prepare"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("train", "tarin"), 2u);
}

}  // namespace
}  // namespace strand
