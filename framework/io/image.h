// RGB images for the analysis pictures: a pixel buffer, heatmap colours, labels in a small
// built-in 5 x 7 bitmap font, and PNG files written through libpng (by temp file and rename).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace strand::io {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

class Image {
 public:
  Image(int64_t width, int64_t height, Rgb background = {255, 255, 255});
  int64_t width() const { return width_; }
  int64_t height() const { return height_; }
  Rgb at(int64_t x, int64_t y) const;
  // Pixels outside the image are ignored (labels may run past an edge).
  void set(int64_t x, int64_t y, Rgb c);
  void fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Rgb c);
  const std::vector<uint8_t>& rgb() const { return rgb_; }

 private:
  int64_t width_, height_;
  std::vector<uint8_t> rgb_;  // row-major, 3 bytes a pixel
};

// The heatmap colour of t in [0, 1] (clamped): dark blue through teal and green to yellow, a
// perceptually ordered ramp close to viridis.
Rgb heat_color(double t);

// Glyph cells of the built-in font: 5 x 7 pixels and one column of spacing, times `scale`.
constexpr int kGlyphWidth = 6;
constexpr int kGlyphHeight = 8;
// Draws `text` with its top-left corner at (x, y). Letters are drawn in capitals; a character
// the font lacks is a small hollow box. Returns the width drawn.
int64_t draw_text(Image& img, int64_t x, int64_t y, std::string_view text, Rgb color, int scale = 1);
// `text` drawn bottom to top (rotated 90 degrees), its bottom-left corner at (x, y).
void draw_text_vertical(Image& img, int64_t x, int64_t y, std::string_view text, Rgb color, int scale = 1);

// Writes an 8-bit RGB PNG (through a temporary file renamed into place); an error names the path.
void write_png(const std::string& path, const Image& img);
// Reads back a PNG written by write_png (for tests): its size and RGB pixels.
Image read_png(const std::string& path);

}  // namespace strand::io
