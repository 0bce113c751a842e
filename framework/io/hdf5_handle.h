// Small HDF5 C-API helpers shared by the checkpoint files (framework/io) and the HDF5 token
// datasets (data/): an identifier closed by its matching close function, the most specific
// message of HDF5's error stack, and a scope that keeps HDF5 from printing its stack to stderr.
#pragma once
#include <hdf5.h>

#include <string>
#include <utility>

namespace strand::io::hdf5 {

// Note [No HDF5 shutdown at exit]: a file whose close failed (a disk that filled during a save)
// stays in HDF5's table of open files, and the library's exit handler then crashes closing it
// again. strand closes every file it opens through Handle, so the handler has nothing to do:
// it is not installed. H5dont_atexit must come before the library's first use, hence a
// variable initialised before main in every program that includes this header.
inline const bool kNoHdf5ShutdownAtExit = (H5dont_atexit(), true);

// One HDF5 identifier, closed with its close function when it goes out of scope.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() { release(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      release();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; a negative result means HDF5 could not finish (e.g. flushing the file).
  herr_t release() {
    herr_t rc = 0;
    if (id_ >= 0 && close_) rc = close_(id_);
    id_ = H5I_INVALID_HID;
    return rc;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// The innermost message of HDF5's current error stack ("truncated file: eof = ..."), or "" when
// there is none; clears the stack.
inline std::string error_reason() {
  std::string reason;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &reason);
  H5Eclear2(H5E_DEFAULT);
  // A failed write's message spans lines ("file write failed: time = ..., errno = 28, error
  // message = 'No space left on device', ..."): keep the system's message, on one line.
  const std::string marker = "error message = '";
  if (const size_t at = reason.find(marker); at != std::string::npos) {
    const size_t begin = at + marker.size(), end = reason.find('\'', begin);
    if (end != std::string::npos) reason = reason.substr(begin, end - begin);
  }
  for (char& c : reason)
    if (c == '\n' || c == '\r') c = ' ';
  return reason;
}

// HDF5 prints its error stack to stderr by default; inside this scope it does not (failures
// become one error line instead), and the caller's handler is restored afterwards.
class QuietErrors {
 public:
  QuietErrors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

}  // namespace strand::io::hdf5
