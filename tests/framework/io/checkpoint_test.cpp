// HDF5 checkpoints: bit-exact round trip, the step directory (latest, keep, resume), loading
// into parameters with shape checks, corrupt and truncated files, and crash safety (an error
// or a SIGKILL midway never leaves a partial file under the final name).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include "framework/io/checkpoint.h"
#include "framework/io/checkpoint_dir.h"
#include "support/temp_dir.h"

namespace strand::io {
namespace {
namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

// A fresh directory per test, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("strand_ckpt_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Names in the directory that start with ".tmp-": leftovers of an unfinished write.
  std::vector<std::string> temp_files() const { return strand::testing::files_starting_with(dir_, ".tmp-"); }
  fs::path dir_;
};

template <class F>
std::string checkpoint_error(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected CheckpointError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected CheckpointError, nothing was thrown";
  return "";
}

// Float bits that a lossy path would change: NaN payloads, signed zero, subnormals, infinities.
Tensor awkward_floats(const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  std::mt19937 rng(seed);
  const uint32_t specials[] = {0x7fc00001u, 0xffa00005u, 0x80000000u, 0x00000001u, 0x7f800000u, 0xff800000u};
  for (int64_t i = 0; i < t.numel(); ++i) {
    const uint32_t bits = i < 6 ? specials[i] : static_cast<uint32_t>(rng());
    std::memcpy(&p[i], &bits, 4);
  }
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.copy_as(a.dtype(), Device::cpu()), cb = b.copy_as(b.dtype(), Device::cpu());
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

void expect_same_group(const CheckpointGroup& got, const CheckpointGroup& want) {
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (size_t i = 0; i < want.tensors.size(); ++i) {
    EXPECT_EQ(got.tensors[i].first, want.tensors[i].first) << "tensors come back in the order written";
    EXPECT_TRUE(same_bits(got.tensors[i].second, want.tensors[i].second)) << want.tensors[i].first;
  }
  EXPECT_EQ(got.int64s, want.int64s);
  EXPECT_EQ(got.uint64s, want.uint64s);
  ASSERT_EQ(got.float64s.size(), want.float64s.size());
  for (const auto& [name, v] : want.float64s) {
    ASSERT_TRUE(got.float64s.count(name)) << name;
    EXPECT_EQ(std::memcmp(&got.float64s.at(name), &v, sizeof v), 0) << name;
  }
}

// A small gpt-shaped checkpoint (names as in architecture.md §6).
CheckpointData sample_checkpoint(int64_t C = 8, int64_t V = 16, int64_t T = 12, uint32_t seed = 1) {
  CheckpointData d;
  d.config_yaml = "run:\n  name: \"caf\u00e9\"\nmodel:\n  d_model: " + std::to_string(C) + "\n";
  auto add = [&](const std::string& name, const Shape& s) {
    d.model.tensors.emplace_back(name, awkward_floats(s, seed + static_cast<uint32_t>(d.model.tensors.size())));
  };
  add("transformer.wte.weight", {V, C});
  add("transformer.wpe.weight", {T, C});
  add("transformer.h.0.ln_1.weight", {C});
  add("transformer.h.0.attn.c_attn.weight", {C, 3 * C});
  add("transformer.h.0.attn.c_attn.bias", {3 * C});
  add("transformer.h.0.mlp.c_fc.weight", {C, 4 * C});
  add("transformer.ln_f.weight", {C});
  // Subgroups read back depth first, so all of m/ precedes v/ as written here.
  for (const auto& [name, t] : d.model.tensors) d.optimizer.tensors.emplace_back("m/" + name, Tensor::randn(t.shape(), seed + 100));
  for (const auto& [name, t] : d.model.tensors)
    d.optimizer.tensors.emplace_back("v/" + name, Tensor::randn(t.shape(), seed + 200, DType::F64));
  d.optimizer.set_int("step", 20);
  d.trainer.set_int("step", 20);
  d.trainer.set_int("tokens_seen", 40960);
  d.trainer.int64s["loader_position"] = {3, -1, std::numeric_limits<int64_t>::max()};
  d.trainer.uint64s["rng_state"] = {0xdeadbeefcafebabeull, std::numeric_limits<uint64_t>::max(), 0};
  d.trainer.float64s["loss_scale"] = 65536.0;
  d.trainer.float64s["tiny"] = 4.9406564584124654e-324;
  d.trainer.tensors.emplace_back("token_ids", Tensor::arange(5, DType::I32));
  d.extra["pruning"].int64s["layer_0.kept_heads"] = {0, 2, 3};
  return d;
}

TEST_F(CheckpointTest, RoundTripIsBitExact) {
  CheckpointData d = sample_checkpoint();
  d.config_yaml += std::string(100000, '#') + "\n";  // larger than a compact HDF5 attribute (64 KiB)
  d.model.tensors.emplace_back("scalar.weight", Tensor::full({}, 2.5));
  d.model.tensors.emplace_back("empty.weight", Tensor::empty({0, 3}));
  const std::string file = path("ck.h5");
  write_checkpoint(file, d);
  const CheckpointData back = read_checkpoint(file);
  EXPECT_EQ(back.config_yaml, d.config_yaml);
  EXPECT_EQ(back.version, kCheckpointVersion);
  EXPECT_EQ(back.source, file);
  expect_same_group(back.model, d.model);
  expect_same_group(back.optimizer, d.optimizer);
  expect_same_group(back.trainer, d.trainer);
  ASSERT_EQ(back.extra.size(), 1u);
  expect_same_group(back.extra.at("pruning"), d.extra.at("pruning"));
  EXPECT_EQ(back.trainer.get_int("step"), 20);
  EXPECT_EQ(back.trainer.get_uints("rng_state")[0], 0xdeadbeefcafebabeull);
  EXPECT_EQ(back.trainer.get_float("loss_scale"), 65536.0);
  EXPECT_EQ(back.optimizer.find_tensor("v/transformer.wte.weight")->dtype(), DType::F64);
  EXPECT_EQ(read_checkpoint_config(file), d.config_yaml);
  EXPECT_TRUE(temp_files().empty());
}

TEST_F(CheckpointTest, NonContiguousTensorsAreWrittenInLogicalOrder) {
  CheckpointData d;
  const Tensor base = Tensor::arange(6).as_strided({2, 3}, {3, 1}, 0);
  const Tensor transposed = base.as_strided({3, 2}, {1, 3}, 0);
  d.model.tensors.emplace_back("w", transposed);
  write_checkpoint(path("t.h5"), d);
  const CheckpointData back = read_checkpoint(path("t.h5"));
  EXPECT_EQ(back.model.tensors[0].second.shape(), (Shape{3, 2}));
  EXPECT_EQ(back.model.tensors[0].second.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
}

TEST_F(CheckpointTest, MissingEntriesAndBadNamesAreNamed) {
  write_checkpoint(path("a.h5"), sample_checkpoint());
  const CheckpointData back = read_checkpoint(path("a.h5"));
  EXPECT_CONTAINS(checkpoint_error([&] { back.trainer.get_int("nope"); }), path("a.h5") + ":/trainer: int64 dataset 'nope' is missing");
  EXPECT_CONTAINS(checkpoint_error([&] { back.trainer.get_int("loader_position"); }), "holds 3 values, expected 1");
  EXPECT_CONTAINS(checkpoint_error([&] { back.trainer.get_float("x"); }), "float64 dataset 'x' is missing");
  for (const std::string bad : {"", "/abs", "a//b", "trailing/"}) {
    CheckpointData d;
    d.model.tensors.emplace_back(bad, Tensor::zeros({2}));
    EXPECT_CONTAINS(checkpoint_error([&] { write_checkpoint(path("b.h5"), d); }), path("b.h5") + ": dataset 'model/" + bad + "'");
  }
  CheckpointData reserved;
  reserved.extra["model"].set_int("x", 1);
  EXPECT_CONTAINS(checkpoint_error([&] { write_checkpoint(path("b.h5"), reserved); }), "extra group name 'model' is reserved");
  EXPECT_FALSE(fs::exists(path("b.h5")));
  EXPECT_CONTAINS(checkpoint_error([&] { write_checkpoint(path("no/such/dir/c.h5"), sample_checkpoint()); }),
                  path("no/such/dir/c.h5") + ": cannot create the temporary file");
}

TEST_F(CheckpointTest, LoadIntoCopiesMatchingParameters) {
  const CheckpointData d = sample_checkpoint();
  write_checkpoint(path("m.h5"), d);
  const CheckpointData back = read_checkpoint(path("m.h5"));
  std::vector<std::pair<std::string, Tensor>> params;
  for (auto it = d.model.tensors.rbegin(); it != d.model.tensors.rend(); ++it)  // any order
    params.emplace_back(it->first, Tensor::zeros(it->second.shape()).set_requires_grad(true));
  load_into(params, back);
  for (const auto& [name, t] : params) EXPECT_TRUE(same_bits(t, *d.model.find_tensor(name))) << name;
}

TEST_F(CheckpointTest, LoadIntoRefusesAnotherModel) {
  write_checkpoint(path("m.h5"), sample_checkpoint(8));
  const CheckpointData back = read_checkpoint(path("m.h5"));
  // Same names, other width: the first mismatching parameter is named with both shapes.
  std::vector<std::pair<std::string, Tensor>> other;
  for (const auto& [name, t] : sample_checkpoint(4).model.tensors) other.emplace_back(name, Tensor::zeros(t.shape()));
  EXPECT_CONTAINS(checkpoint_error([&] { load_into(other, back); }),
                  path("m.h5") + ": parameter 'transformer.wte.weight': checkpoint has shape [16, 8], model has [16, 4]");
  for (const auto& [name, t] : other) EXPECT_EQ(t.to_vector(), std::vector<double>(t.numel(), 0.0)) << "nothing copied";

  std::vector<std::pair<std::string, Tensor>> fewer(other.begin() + 1, other.end());
  for (auto& [name, t] : fewer) t = Tensor::zeros(back.model.find_tensor(name)->shape());
  EXPECT_CONTAINS(checkpoint_error([&] { load_into(fewer, back); }), "unexpected parameter 'transformer.wte.weight'");
  auto more = fewer;
  more.emplace_back("transformer.h.1.ln_1.weight", Tensor::zeros({8}));
  const std::string msg = checkpoint_error([&] { load_into(more, back); });
  EXPECT_CONTAINS(msg, "missing parameter 'transformer.h.1.ln_1.weight'");
  EXPECT_CONTAINS(msg, "unexpected parameter 'transformer.wte.weight'");
}

TEST_F(CheckpointTest, CorruptFilesGiveOneLineNamingTheFile) {
  const std::string random_file = path("random.h5");
  {
    std::ofstream out(random_file, std::ios::binary);
    std::mt19937 rng(7);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(rng()));
  }
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint(random_file); }), random_file + ": not an HDF5 file");
  std::ofstream(path("empty.h5")).close();
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint(path("empty.h5")); }), path("empty.h5") + ": ");
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint(path("absent.h5")); }), path("absent.h5") + ": no such checkpoint file");
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint(dir_.string()); }), ": is a directory");

  // A real checkpoint cut short at several points.
  const std::string good = path("good.h5");
  write_checkpoint(good, sample_checkpoint(32, 64, 32));
  const auto size = fs::file_size(good);
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const size_t cut : {size_t{64}, size_t{600}, size / 3, size / 2, size - 1}) {
    const std::string cut_file = path("cut_" + std::to_string(cut) + ".h5");
    std::ofstream(cut_file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut));
    const std::string msg = checkpoint_error([&] { read_checkpoint(cut_file); });
    EXPECT_EQ(msg.rfind(cut_file + ": ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }

  // The right container with the wrong `format` attribute.
  std::string patched = bytes;
  const size_t at = patched.find(kCheckpointFormat);
  ASSERT_NE(at, std::string::npos);
  patched[at + std::strlen(kCheckpointFormat) - 1] = 'X';
  std::ofstream(path("foreign.h5"), std::ios::binary).write(patched.data(), static_cast<std::streamsize>(patched.size()));
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint(path("foreign.h5")); }),
                  path("foreign.h5") + ": format attribute is 'strand-checkpoinX', expected 'strand-checkpoint'");
  EXPECT_CONTAINS(checkpoint_error([&] { read_checkpoint_config(path("foreign.h5")); }), "format attribute is");
}

TEST_F(CheckpointTest, AFlippedByteInAnyDatasetIsNamedOnLoad) {
  // Each dataset's bytes are found in the file by their values (stored little-endian, as in
  // memory here); one bit flipped in the middle must fail the load, naming that dataset. (The
  // moments of one seed share a prefix across shapes: only the largest is found unambiguously.)
  const CheckpointData d = sample_checkpoint(32, 64, 32);
  const std::string good = path("good.h5");
  write_checkpoint(good, d);
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  struct Target {
    std::string name;  // as the error names it
    Tensor values;
  };
  const std::vector<Target> targets = {{"model/transformer.wte.weight", d.model.tensors[0].second},
                                       {"model/transformer.h.0.mlp.c_fc.weight", d.model.tensors[5].second},
                                       {"optimizer/m/transformer.wte.weight", d.optimizer.tensors[0].second},
                                       {"optimizer/v/transformer.wte.weight", d.optimizer.tensors[7].second}};
  for (const Target& t : targets) {
    ASSERT_TRUE(t.values.is_contiguous());
    const std::string data(static_cast<const char*>(t.values.raw_data()), t.values.nbytes());
    const size_t at = bytes.find(data);
    ASSERT_NE(at, std::string::npos) << t.name << " is not stored as one run of bytes";
    std::string damaged = bytes;
    damaged[at + data.size() / 2] ^= 0x10;
    const std::string file = path("flipped.h5");
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(damaged.data(), static_cast<std::streamsize>(damaged.size()));
    const std::string msg = checkpoint_error([&] { read_checkpoint(file); });
    EXPECT_CONTAINS(msg, file + ": cannot read dataset '" + t.name + "': its checksum does not match");
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST_F(CheckpointTest, AFailedWriteLeavesThePreviousFileIntact) {
  const std::string file = path("ck.h5");
  const CheckpointData first = sample_checkpoint(8, 16, 12, 1);
  write_checkpoint(file, first);
  // The second write fails midway: the bfloat16 tensor comes after several written ones.
  CheckpointData second = sample_checkpoint(8, 16, 12, 2);
  second.model.tensors.insert(second.model.tensors.begin() + 4, {"bad.weight", Tensor::zeros({4}, DType::BF16)});
  EXPECT_CONTAINS(checkpoint_error([&] { write_checkpoint(file, second); }),
                  file + ": tensor 'model/bad.weight' has dtype bfloat16");
  second.model.tensors[4].second = Tensor();
  EXPECT_CONTAINS(checkpoint_error([&] { write_checkpoint(file, second); }), file + ": tensor 'model/bad.weight' is undefined");
  EXPECT_TRUE(temp_files().empty()) << "the temporary file is removed";
  expect_same_group(read_checkpoint(file).model, first.model);

  // Through the directory: no new step file, `latest` still names the previous one.
  CheckpointDir ckpts(path("run"), 2);
  const std::string saved = ckpts.save(10, first);
  EXPECT_THROW(ckpts.save(20, second), CheckpointError);
  EXPECT_FALSE(fs::exists(ckpts.path_for_step(20)));
  EXPECT_EQ(ckpts.latest(), saved);
  expect_same_group(read_checkpoint(*ckpts.latest()).model, first.model);
}

// A writer killed at an arbitrary moment: the final name holds the old or the new checkpoint
// in full, never a part of one.
TEST_F(CheckpointTest, AKilledWriterNeverLeavesAPartialFile) {
  const std::string file = path("ck.h5");
  const CheckpointData old_data = sample_checkpoint(8, 16, 12, 1);
  write_checkpoint(file, old_data);
  // Attempts 0-2 kill the writer early; attempt 3 lets it finish, so the new file must appear.
  for (int attempt = 0; attempt < 4; ++attempt) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      CheckpointData big;
      for (int i = 0; i < 16; ++i) {
        Tensor t = Tensor::empty({1024, 1024}, DType::F32);
        float* p = t.data<float>();
        for (int64_t j = 0; j < t.numel(); ++j) p[j] = static_cast<float>(i + j);
        big.model.tensors.emplace_back("layer." + std::to_string(i) + ".weight", t);
      }
      try {
        write_checkpoint(file, big);
      } catch (...) {
        ::_exit(2);
      }
      ::_exit(0);
    }
    int status = 0;
    bool reaped = false;
    if (attempt < 3) {
      // Kill as soon as the temporary file exists, a little later on each attempt.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!reaped && temp_files().empty() && std::chrono::steady_clock::now() < deadline) {
        reaped = ::waitpid(child, &status, WNOHANG) == child;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
      if (!reaped) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
      }
    } else {
      ASSERT_EQ(::waitpid(child, &status, 0), child);
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the unkilled writer must succeed";
    }
    const CheckpointData now = read_checkpoint(file);  // must parse: old or new, complete
    if (now.model.tensors.size() == old_data.model.tensors.size()) {
      EXPECT_LT(attempt, 3) << "a finished write must replace the old file";
      expect_same_group(now.model, old_data.model);
    } else {
      ASSERT_EQ(now.model.tensors.size(), 16u);
      EXPECT_EQ(now.model.tensors[15].second.to_vector()[7], 15.0 + 7.0);
      write_checkpoint(file, old_data);  // start the next attempt from the old file again
    }
    for (const auto& t : temp_files()) fs::remove(t);  // leftovers of the killed writer
  }
}

TEST_F(CheckpointTest, DirectoryKeepsTheNewestAndPointsLatestAtThem) {
  CheckpointDir ckpts(path("run/checkpoints"), 2);
  EXPECT_EQ(ckpts.latest(), std::nullopt);
  EXPECT_EQ(fs::path(ckpts.path_for_step(20)).filename(), "step_00000020.h5");
  EXPECT_EQ(fs::path(ckpts.path_for_step(123456789)).filename(), "step_123456789.h5");
  for (int64_t step : {10, 20, 30, 40}) {
    CheckpointData d = sample_checkpoint();
    d.trainer.set_int("step", step);
    EXPECT_EQ(ckpts.save(step, d), ckpts.path_for_step(step));
    std::ifstream pointer(path("run/checkpoints/latest"));
    std::string name;
    pointer >> name;
    EXPECT_EQ(name, fs::path(ckpts.path_for_step(step)).filename().string());
    EXPECT_EQ(ckpts.latest(), ckpts.path_for_step(step));
  }
  const auto files = ckpts.list();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].first, 30);
  EXPECT_EQ(files[1].first, 40);
  EXPECT_EQ(read_checkpoint(*ckpts.latest()).trainer.get_int("step"), 40);
  EXPECT_FALSE(fs::exists(ckpts.path_for_step(10)));

  CheckpointDir keep_all(path("all"), 0);
  for (int64_t step : {1, 2, 3, 4}) keep_all.save(step, sample_checkpoint());
  EXPECT_EQ(keep_all.list().size(), 4u);
  EXPECT_CONTAINS(checkpoint_error([&] { CheckpointDir(path("x"), -1); }), "keep must be >= 0, got -1");
}

TEST_F(CheckpointTest, ResumeAutoNoneExplicitAndMissing) {
  const std::string run = path("run");
  EXPECT_EQ(resolve_resume("auto", run), std::nullopt) << "no directory yet: a fresh start";
  EXPECT_EQ(resolve_resume("none", run), std::nullopt);
  CheckpointDir ckpts(run, 3);
  ckpts.save(5, sample_checkpoint());
  const std::string second = ckpts.save(15, sample_checkpoint());
  EXPECT_EQ(resolve_resume("auto", run), second);
  EXPECT_EQ(resolve_resume("none", run), std::nullopt);
  EXPECT_EQ(resolve_resume(ckpts.path_for_step(5), path("elsewhere")), ckpts.path_for_step(5));
  EXPECT_EQ(resolve_resume(run, path("elsewhere")), second) << "a directory resumes from its latest";
  EXPECT_CONTAINS(checkpoint_error([&] { resolve_resume(path("typo/step_00000015.h5"), run); }),
                  path("typo/step_00000015.h5") + ": checkpoint.resume names a path that does not exist");
  fs::create_directories(path("empty_dir"));
  EXPECT_CONTAINS(checkpoint_error([&] { resolve_resume(path("empty_dir"), run); }), "holds no checkpoint");

  // Without `latest` the highest step wins; a `latest` naming a missing file is an error.
  fs::remove(fs::path(run) / "latest");
  EXPECT_EQ(resolve_resume("auto", run), second);
  std::ofstream(fs::path(run) / "latest") << "step_00000099.h5\n";
  EXPECT_CONTAINS(checkpoint_error([&] { resolve_resume("auto", run); }), "latest: names step_00000099.h5, which does not exist");
}

}  // namespace
}  // namespace strand::io
