// The one JSON string escaper and number writer: quotes and backslashes escaped, control
// characters as \u00XX, UTF-8 passed through byte for byte; numbers round-trip in their
// shortest form, and non-finite numbers are null.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "framework/core/json.h"

namespace strand {
namespace {

TEST(JsonString, QuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(json_string(""), "\"\"");
  EXPECT_EQ(json_string("plain text"), "\"plain text\"");
  EXPECT_EQ(json_string("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(json_string("C:\\runs\\a"), "\"C:\\\\runs\\\\a\"");
  EXPECT_EQ(json_string("/"), "\"/\"");  // the solidus needs no escape
}

TEST(JsonString, ControlCharactersAreUnicodeEscapes) {
  EXPECT_EQ(json_string("a\nb"), "\"a\\u000ab\"");
  EXPECT_EQ(json_string("\t"), "\"\\u0009\"");
  EXPECT_EQ(json_string("\r"), "\"\\u000d\"");
  EXPECT_EQ(json_string(std::string(1, '\0')), "\"\\u0000\"");  // an embedded NUL is kept
  EXPECT_EQ(json_string("\x1f"), "\"\\u001f\"");
  EXPECT_EQ(json_string("\x7f"), "\"\x7f\"");  // DEL is not a JSON control character
}

TEST(JsonString, Utf8BytesPassThrough) {
  const std::string text = "na\xc3\xafve \xe2\x88\x91 \xf0\x9f\x99\x82";  // naïve ∑ 🙂
  EXPECT_EQ(json_string(text), "\"" + text + "\"");
}

TEST(JsonString, AppendAddsToWhatIsThere) {
  std::string out = "{";
  append_json_string(out, "k\"");
  out += ':';
  append_json_string(out, "v\n");
  EXPECT_EQ(out, "{\"k\\\"\":\"v\\u000a\"");
}

TEST(JsonNumber, ShortestFormThatRoundTrips) {
  EXPECT_EQ(json_number(0.0), "0");
  EXPECT_EQ(json_number(1.5), "1.5");
  EXPECT_EQ(json_number(0.1), "0.1");
  EXPECT_EQ(json_number(-3e-5), "-3e-05");
  EXPECT_EQ(json_number(1e20), "1e+20");
  for (const double v : {0.1 + 0.2, 1.0 / 3.0, 2.718281828459045, 6.02214076e23, 5e-324,
                         std::numeric_limits<double>::max()}) {
    const std::string text = json_number(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
  EXPECT_EQ(json_number(0.1 + 0.2), "0.30000000000000004");
}

TEST(JsonNumber, NonFiniteIsNull) {
  EXPECT_EQ(json_number(std::nan("")), "null");
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), "null");
}

}  // namespace
}  // namespace strand
