// Images: PNG files read back pixel for pixel, the heatmap ramp, the bitmap font drawing ink, and
// an unwritable path named in the error.
#include "framework/io/image.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "framework/core/error.h"
#include "support/temp_dir.h"

namespace strand {
namespace {

TEST(Image, APngReadsBackPixelForPixel) {
  testing::TempDir dir("strand_image");
  io::Image img(37, 21);
  for (int64_t y = 0; y < 21; ++y)
    for (int64_t x = 0; x < 37; ++x) img.set(x, y, io::heat_color(static_cast<double>(x * y) / (36.0 * 20.0)));
  io::draw_text(img, 1, 1, "L0 H1", {255, 0, 0});
  const std::string path = dir.file("a.png");
  io::write_png(path, img);
  const io::Image back = io::read_png(path);
  ASSERT_EQ(back.width(), 37);
  ASSERT_EQ(back.height(), 21);
  EXPECT_EQ(back.rgb(), img.rgb());
  // Written through a temporary name: nothing else is left in the directory.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()), 1);
}

TEST(Image, TheHeatRampRunsFromDarkBlueToYellowAndClamps) {
  EXPECT_EQ(io::heat_color(0.0), (io::Rgb{68, 1, 84}));
  EXPECT_EQ(io::heat_color(1.0), (io::Rgb{253, 231, 37}));
  EXPECT_EQ(io::heat_color(-3.0), io::heat_color(0.0));
  EXPECT_EQ(io::heat_color(7.0), io::heat_color(1.0));
  // Brighter (summed channels) as t grows.
  int last = -1;
  for (double t = 0; t <= 1.0; t += 0.125) {
    const io::Rgb c = io::heat_color(t);
    const int sum = c.r + c.g + c.b;
    EXPECT_GT(sum, last) << t;
    last = sum;
  }
}

int ink(const io::Image& img, io::Rgb color) {
  int n = 0;
  for (int64_t y = 0; y < img.height(); ++y)
    for (int64_t x = 0; x < img.width(); ++x) n += img.at(x, y) == color;
  return n;
}

TEST(Image, TextDrawsGlyphsOfTheFontAndABoxForMissingOnes) {
  const io::Rgb black{0, 0, 0};
  io::Image a(60, 10), b(60, 10), box(60, 10), blank(60, 10);
  EXPECT_EQ(io::draw_text(a, 0, 0, "I", black), io::kGlyphWidth);
  io::draw_text(b, 0, 0, "i", black);  // capitals stand for both cases
  EXPECT_EQ(a.rgb(), b.rgb());
  EXPECT_EQ(ink(a, black), 11);  // 'I': 3 + 5 + 3 pixels
  io::draw_text(box, 0, 0, "~", black);
  EXPECT_EQ(ink(box, black), 5 + 5 + 5 * 2);  // a hollow 5 x 7 box
  io::draw_text(blank, 0, 0, " ", black);
  EXPECT_EQ(ink(blank, black), 0);
  io::Image vertical(10, 60);
  io::draw_text_vertical(vertical, 0, 59, "I", black);
  EXPECT_EQ(ink(vertical, black), 11);
}

TEST(Image, AnUnwritablePathIsNamed) {
  io::Image img(2, 2);
  try {
    io::write_png("/nonexistent-dir/x.png", img);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.png"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand
