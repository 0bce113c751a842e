// Shape and strides (in elements), printing, and the broadcasting rule.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace strand {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& s);
Shape contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);
// Normalises a possibly negative axis; throws ValueError naming `op` when out of range.
int64_t wrap_axis(int64_t axis, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace strand

namespace std {
inline ostream& operator<<(ostream& os, const strand::Shape& s) { return os << strand::shape_str(s); }
}  // namespace std
