// Storage allocation through the caching allocator.
#include "framework/core/storage.h"

#include "framework/core/allocator.h"

namespace strand {

Storage::Storage(size_t nbytes, Device device)
    : data_(memory::allocate(device, nbytes)), nbytes_(nbytes), device_(device) {}

Storage::~Storage() { memory::deallocate(device_, data_, nbytes_); }

}  // namespace strand
