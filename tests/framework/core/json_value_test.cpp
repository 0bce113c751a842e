// The JSON reader: every kind of value, members in file order, escapes (surrogate pairs
// included) decoded, malformed text refused naming the byte, and what json.h writes read back.
#include <gtest/gtest.h>

#include <string>

#include "framework/core/error.h"
#include "framework/core/json.h"
#include "framework/core/json_value.h"

namespace strand {
namespace {

TEST(JsonValue, ReadsEveryKindInOrder) {
  const JsonValue v = parse_json(R"( {"b": 1.5e-3, "a": [true, false, null], "s": "x", "o": {}, "n": -7} )");
  ASSERT_EQ(v.kind, JsonValue::Kind::Object);
  ASSERT_EQ(v.members.size(), 5u);
  EXPECT_EQ(v.members[0].first, "b");  // file order, not sorted
  EXPECT_DOUBLE_EQ(v.find("b")->number, 1.5e-3);
  EXPECT_EQ(v.find("b")->text, "1.5e-3");
  const JsonValue& a = *v.find("a");
  ASSERT_EQ(a.items.size(), 3u);
  EXPECT_TRUE(a.items[0].boolean);
  EXPECT_EQ(a.items[1].kind, JsonValue::Kind::Bool);
  EXPECT_FALSE(a.items[1].boolean);
  EXPECT_EQ(a.items[2].kind, JsonValue::Kind::Null);
  EXPECT_EQ(v.find("s")->text, "x");
  EXPECT_EQ(v.find("o")->kind, JsonValue::Kind::Object);
  EXPECT_DOUBLE_EQ(v.find("n")->number, -7);
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(JsonValue, DecodesEscapes) {
  EXPECT_EQ(parse_json(R"("a\"b\\c\/d\n\t")").text, "a\"b\\c/d\n\t");
  EXPECT_EQ(parse_json(R"("\u00e9")").text, "\xC3\xA9");            // é
  EXPECT_EQ(parse_json(R"("\ud83d\ude00")").text, "\xF0\x9F\x98\x80");  // a surrogate pair: U+1F600
}

TEST(JsonValue, ReadsWhatTheWriterWrites) {
  const std::string text = "{" + json_string("k\x01\"") + ": " + json_number(0.1) + "}";
  const JsonValue v = parse_json(text);
  EXPECT_EQ(v.members[0].first, "k\x01\"");
  EXPECT_EQ(v.members[0].second.number, 0.1);
  EXPECT_EQ(to_json(v), text);
}

TEST(JsonValue, MalformedTextNamesTheByte) {
  for (const char* bad : {"{\"a\": 1", "{\"a\" 1}", "[1, 2", "\"open", "{\"a\": 1} x", "tru", "{\"a\": 1.2.3}", ""}) {
    try {
      parse_json(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const ValueError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("at byte ", 0), 0u) << e.what();
    }
  }
}

TEST(JsonValue, DeepNestingIsRefusedNotACrash) {
  EXPECT_THROW(parse_json(std::string(100000, '[')), ValueError);
}

}  // namespace
}  // namespace strand
