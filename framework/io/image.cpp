// RGB images, heatmap colours, the 5 x 7 font and PNG files (image.h).
#include "framework/io/image.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "framework/core/error.h"
#include "framework/io/atomic_file.h"

namespace strand::io {

namespace {

// The font: each glyph is 7 rows of 5 columns, '#' for ink. Capital letters stand for both cases.
struct Glyph {
  char c;
  std::array<const char*, 7> rows;
};

// clang-format off
constexpr Glyph kFont[] = {
  {'0', {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "}},
  {'1', {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
  {'2', {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"}},
  {'3', {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "}},
  {'4', {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "}},
  {'5', {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "}},
  {'6', {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "}},
  {'7', {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "}},
  {'8', {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "}},
  {'9', {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "}},
  {'A', {" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
  {'B', {"#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "}},
  {'C', {" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "}},
  {'D', {"###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  "}},
  {'E', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"}},
  {'F', {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "}},
  {'G', {" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"}},
  {'H', {"#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"}},
  {'I', {" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
  {'J', {"  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "}},
  {'K', {"#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"}},
  {'L', {"#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"}},
  {'M', {"#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"}},
  {'N', {"#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"}},
  {'O', {" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
  {'P', {"#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "}},
  {'Q', {" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"}},
  {'R', {"#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"}},
  {'S', {" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "}},
  {'T', {"#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "}},
  {'U', {"#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "}},
  {'V', {"#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "}},
  {'W', {"#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "}},
  {'X', {"#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"}},
  {'Y', {"#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "}},
  {'Z', {"#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"}},
  {' ', {"     ", "     ", "     ", "     ", "     ", "     ", "     "}},
  {'.', {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "}},
  {',', {"     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "}},
  {':', {"     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "}},
  {';', {"     ", " ##  ", " ##  ", "     ", " ##  ", "  #  ", " #   "}},
  {'!', {"  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "}},
  {'?', {" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "}},
  {'\'', {"  #  ", "  #  ", " #   ", "     ", "     ", "     ", "     "}},
  {'"', {" # # ", " # # ", "     ", "     ", "     ", "     ", "     "}},
  {'-', {"     ", "     ", "     ", "#####", "     ", "     ", "     "}},
  {'_', {"     ", "     ", "     ", "     ", "     ", "     ", "#####"}},
  {'+', {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "}},
  {'=', {"     ", "     ", "#####", "     ", "#####", "     ", "     "}},
  {'/', {"    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "}},
  {'(', {"   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "}},
  {')', {" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "}},
  {'[', {" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "}},
  {']', {" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "}},
  {'<', {"   # ", "  #  ", " #   ", "#    ", " #   ", "  #  ", "   # "}},
  {'>', {" #   ", "  #  ", "   # ", "    #", "   # ", "  #  ", " #   "}},
  {'*', {"     ", "# # #", " ### ", "#####", " ### ", "# # #", "     "}},
  {'#', {" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "}},
  {'%', {"##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"}},
  {'&', {" ##  ", "#  # ", "# #  ", " #   ", "# # #", "#  # ", " ## #"}},
  {'@', {" ### ", "#   #", "# ###", "# # #", "# ###", "#    ", " ### "}},
};
// clang-format on

// A character the font lacks: a hollow box.
constexpr Glyph kMissing = {'?', {"#####", "#   #", "#   #", "#   #", "#   #", "#   #", "#####"}};

const Glyph& glyph_of(char c) {
  const char upper = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  for (const Glyph& g : kFont)
    if (g.c == upper) return g;
  return kMissing;
}

[[noreturn]] void png_failed(const std::string& path, const char* what) {
  throw CheckpointError(detail::concat(path, ": ", what));
}

}  // namespace

Image::Image(int64_t width, int64_t height, Rgb background) : width_(width), height_(height) {
  STRAND_CHECK(width >= 1 && height >= 1 && width <= 32768 && height <= 32768, ValueError, "image: size ", width,
               " x ", height, " outside 1 .. 32768");
  rgb_.resize(static_cast<size_t>(width * height * 3));
  for (size_t i = 0; i < rgb_.size(); i += 3) {
    rgb_[i] = background.r;
    rgb_[i + 1] = background.g;
    rgb_[i + 2] = background.b;
  }
}

Rgb Image::at(int64_t x, int64_t y) const {
  const size_t i = static_cast<size_t>((y * width_ + x) * 3);
  return {rgb_[i], rgb_[i + 1], rgb_[i + 2]};
}

void Image::set(int64_t x, int64_t y, Rgb c) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  const size_t i = static_cast<size_t>((y * width_ + x) * 3);
  rgb_[i] = c.r;
  rgb_[i + 1] = c.g;
  rgb_[i + 2] = c.b;
}

void Image::fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Rgb c) {
  for (int64_t yy = std::max<int64_t>(0, y); yy < std::min(height_, y + h); ++yy)
    for (int64_t xx = std::max<int64_t>(0, x); xx < std::min(width_, x + w); ++xx) set(xx, yy, c);
}

Rgb heat_color(double t) {
  // Five stops of viridis, linearly interpolated.
  static constexpr std::array<std::array<double, 3>, 5> kStops = {{{68, 1, 84},
                                                                    {59, 82, 139},
                                                                    {33, 145, 140},
                                                                    {94, 201, 98},
                                                                    {253, 231, 37}}};
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
  const double pos = t * (kStops.size() - 1);
  const size_t i = std::min(kStops.size() - 2, static_cast<size_t>(pos));
  const double f = pos - static_cast<double>(i);
  auto mix = [&](int ch) {
    return static_cast<uint8_t>(std::lround(kStops[i][ch] + f * (kStops[i + 1][ch] - kStops[i][ch])));
  };
  return {mix(0), mix(1), mix(2)};
}

int64_t draw_text(Image& img, int64_t x, int64_t y, std::string_view text, Rgb color, int scale) {
  int64_t cx = x;
  for (char c : text) {
    const Glyph& g = glyph_of(c);
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g.rows[static_cast<size_t>(row)][col] == '#') img.fill_rect(cx + col * scale, y + row * scale, scale, scale, color);
    cx += kGlyphWidth * scale;
  }
  return cx - x;
}

void draw_text_vertical(Image& img, int64_t x, int64_t y, std::string_view text, Rgb color, int scale) {
  int64_t cy = y;
  for (char c : text) {
    const Glyph& g = glyph_of(c);
    // Glyph column `col` runs upward from cy; glyph row `row` moves right from x.
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g.rows[static_cast<size_t>(row)][col] == '#') img.fill_rect(x + row * scale, cy - (col + 1) * scale, scale, scale, color);
    cy -= kGlyphWidth * scale;
  }
}

void write_png(const std::string& path, const Image& img) {
  const std::string temp = temp_path_for(path);
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr) png_failed(path, "cannot create the file");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (png == nullptr || info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    std::filesystem::remove(temp);
    png_failed(path, "writing the PNG failed (disk full?)");
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width()), static_cast<png_uint_32>(img.height()), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < img.height(); ++y)
    png_write_row(png, const_cast<png_bytep>(img.rgb().data() + y * img.width() * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(f) != 0) {
    std::filesystem::remove(temp);
    png_failed(path, "closing the PNG failed (disk full?)");
  }
  commit_file(temp, path);
}

Image read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) png_failed(path, "not a readable PNG");
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr)) png_failed(path, "not a readable PNG");
  Image out(image.width, image.height);
  for (int64_t y = 0; y < out.height(); ++y)
    for (int64_t x = 0; x < out.width(); ++x) {
      const size_t i = static_cast<size_t>((y * out.width() + x) * 3);
      out.set(x, y, {rgb[i], rgb[i + 1], rgb[i + 2]});
    }
  return out;
}

}  // namespace strand::io
