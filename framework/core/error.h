// Error types thrown by the framework; the CLI turns them into one line and a non-zero exit.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace strand {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error { using Error::Error; };     // shapes that do not fit an op
struct DTypeError : Error { using Error::Error; };     // dtype mix or unsupported dtype
struct DeviceError : Error { using Error::Error; };    // device mix or missing backend
struct AutogradError : Error { using Error::Error; }; // freed graph, in-place on saved, bad grad
struct ValueError : Error { using Error::Error; };     // an argument out of its range

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace strand

// STRAND_CHECK(cond, ShapeError, "matmul: ", a, " vs ", b): throws when cond is false.
#define STRAND_CHECK(cond, ErrorType, ...)                                   \
  do {                                                                       \
    if (!(cond)) throw ::strand::ErrorType(::strand::detail::concat(__VA_ARGS__)); \
  } while (0)
