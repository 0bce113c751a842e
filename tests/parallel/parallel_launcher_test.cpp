// Launcher detection from (fake) environments, the error line, and run_guarded on one rank.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>

#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/launcher.h"

namespace strand::parallel {
namespace {

LaunchInfo detect(const std::map<std::string, std::string>& vars) {
  return detect_launch([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(Launcher, NoLauncherIsOneLocalProcess) {
  const LaunchInfo info = detect({{"HOME", "/root"}});
  EXPECT_EQ(info.size, 1);
  EXPECT_EQ(info.rank, 0);
  EXPECT_FALSE(info.use_mpi);
  EXPECT_EQ(info.source, "");
}

TEST(Launcher, OpenMpiEvenWithOneRankUsesMpi) {
  const LaunchInfo one = detect({{"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_RANK", "0"}});
  EXPECT_TRUE(one.use_mpi);
  EXPECT_EQ(one.size, 1);
  const LaunchInfo four = detect({{"OMPI_COMM_WORLD_SIZE", "4"},
                                  {"OMPI_COMM_WORLD_RANK", "3"},
                                  {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                  {"SLURM_NTASKS", "8"},
                                  {"SLURM_PROCID", "5"}});
  EXPECT_TRUE(four.use_mpi);
  EXPECT_EQ(four.size, 4);  // the MPI launcher's own variables win over the allocation's
  EXPECT_EQ(four.rank, 3);
  EXPECT_EQ(four.local_rank, 1);
  EXPECT_EQ(four.source, "OMPI_COMM_WORLD_SIZE");
}

TEST(Launcher, PmiAndPmix) {
  const LaunchInfo pmi = detect({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}, {"MPI_LOCALRANKID", "1"}});
  EXPECT_TRUE(pmi.use_mpi);
  EXPECT_EQ(pmi.size, 2);
  EXPECT_EQ(pmi.rank, 1);
  EXPECT_EQ(pmi.local_rank, 1);
  const LaunchInfo pmix = detect({{"PMIX_RANK", "2"}});
  EXPECT_TRUE(pmix.use_mpi);
  EXPECT_EQ(pmix.rank, 2);
  EXPECT_EQ(pmix.size, 0);  // known once MPI starts
}

TEST(Launcher, SlurmUsesMpiOnlyForSeveralTasks) {
  const LaunchInfo batch = detect({{"SLURM_NTASKS", "1"}, {"SLURM_PROCID", "0"}});
  EXPECT_FALSE(batch.use_mpi);
  const LaunchInfo step = detect({{"SLURM_NTASKS", "8"}, {"SLURM_PROCID", "6"}, {"SLURM_LOCALID", "2"}});
  EXPECT_TRUE(step.use_mpi);
  EXPECT_EQ(step.size, 8);
  EXPECT_EQ(step.rank, 6);
  EXPECT_EQ(step.local_rank, 2);
  EXPECT_EQ(step.source, "SLURM_NTASKS");
}

TEST(Launcher, MalformedValuesNameTheVariable) {
  try {
    detect({{"OMPI_COMM_WORLD_SIZE", "four"}});
    ADD_FAILURE() << "a non-numeric size was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("OMPI_COMM_WORLD_SIZE is 'four'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(detect({{"SLURM_NTASKS", "0"}}), ValueError);
  EXPECT_THROW(detect({{"PMI_SIZE", "2"}, {"PMI_RANK", "2"}}), ValueError);
  EXPECT_THROW(detect({{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "-1"}}), ValueError);
}

TEST(Launcher, ErrorLineIsRankPrefixedOnlyWithSeveralRanks) {
  EXPECT_EQ(error_line("bad config", 0, 1), "strand: error: bad config");
  EXPECT_EQ(error_line("bad config", 2, 4), "[rank 2] strand: error: bad config");
}

TEST(RunGuarded, ReturnsZeroWhenBodySucceeds) {
  auto g = make_local_group();
  bool ran = false;
  EXPECT_EQ(run_guarded(*g, [&] { ran = true; }), 0);
  EXPECT_TRUE(ran);
}

TEST(RunGuarded, ReportsAnErrorOnOneRankAndReturnsTheCode) {
  auto g = make_local_group();
  testing::internal::CaptureStderr();
  const int code = run_guarded(*g, [] { throw ValueError("train: lr must be positive, got -1"); }, 2);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 2);
  EXPECT_EQ(err, "strand: error: train: lr must be positive, got -1\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_guarded(*g, [] { throw 42; }), 1);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("not a std::exception"), std::string::npos);
}

}  // namespace
}  // namespace strand::parallel
