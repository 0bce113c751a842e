# Multi-rank tests, included from tests/CMakeLists.txt. Each tests/parallel/*_mpitest.cpp is one
# GoogleTest program (main in mpi_test_main.cpp) that CTest runs under mpiexec as
# parallel.<name>.np<P>, label `mpi`. A skipped case makes the program exit 77, which CTest shows
# as skipped; so that an entry is either run or skipped as a whole, cases that need two ranks are
# left out of the one-rank entry and cases that need a GPU get entries of their own, registered
# only where the configuring machine has a GPU. abort_job_test runs abort_helper and
# abort_gtest_helper jobs to check that a failing rank ends the whole job. The suffix keeps these
# sources out of the single-process *_test.cpp glob.
if(NOT TARGET strand_parallel OR NOT STRAND_MPI)
  return()
endif()
find_package(MPI REQUIRED COMPONENTS CXX)

# Open MPI refuses more ranks than cores, and root, unless told otherwise.
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE STRAND_MPIEXEC_VERSION ERROR_QUIET)
set(STRAND_MPIEXEC_EXTRA_FLAGS)
if(STRAND_MPIEXEC_VERSION MATCHES "Open MPI|OpenRTE")
  set(STRAND_MPIEXEC_EXTRA_FLAGS --oversubscribe)
endif()
set(STRAND_MPI_TEST_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1)

# GPU cases are registered on a CUDA build whose configuring machine shows a GPU device node.
set(STRAND_TEST_GPU_DEFAULT OFF)
if(STRAND_WITH_CUDA AND EXISTS /dev/nvidiactl)
  set(STRAND_TEST_GPU_DEFAULT ON)
endif()
option(STRAND_TEST_GPU "Register the GPU cases of the MPI tests" ${STRAND_TEST_GPU_DEFAULT})

# The table: rank counts per program (default 1 2 4), cases left out at one rank (they need two),
# and cases that need a GPU. Names are gtest filter patterns.
set(STRAND_MPITEST_RANKS_ring_mpitest 1 2 3 4)
set(STRAND_MPITEST_RANKS_ulysses_mpitest 1 2 3 4)
set(STRAND_MPITEST_RANKS_grad_sync_mpitest 1 2 3 4)
set(STRAND_MPITEST_RANKS_sp_gradient_mpitest 2 4)
set(STRAND_MPITEST_RANKS_config_agreement_mpitest 2 3)  # needs a rank that differs from rank 0
set(STRAND_MPITEST_RANKS_hybrid_mpitest 2 4)  # splits the sequence over 2 or 4 ranks
set(STRAND_MPITEST_RANKS_offload_mpitest 2)  # sp = 2, ring and Ulysses
set(STRAND_MPITEST_RANKS_checkpointing_mpitest 2 4)  # ring and ulysses at 2, hybrid at 4
set(STRAND_MPITEST_RANKS_prune_mpitest 2)  # sp = 2, ring and Ulysses
set(STRAND_MPITEST_RANKS_attention_stats_mpitest 2 4)  # ring (contiguous, zigzag) and Ulysses at 2, hybrid at 4
set(STRAND_MPITEST_RANKS_distill_checkpointing_mpitest 2)  # sp = 2, ring and Ulysses
set(STRAND_MPITEST_TWO_RANK_CASES_comm_mpitest Comm.ShortMessageIsAShapeError)
set(STRAND_MPITEST_TWO_RANK_CASES_grad_sync_mpitest GradSync.RanksWithDifferentShapesAreAnErrorOnEveryRank)
set(STRAND_MPITEST_GPU_CASES_comm_mpitest Comm.DeviceTensorsAreStagedThroughHost)
set(STRAND_MPITEST_GPU_CASES_nccl_mpitest "Nccl.*")
set(STRAND_MPITEST_GPU_ONLY nccl_mpitest)  # programs without a CPU entry

set(STRAND_MPI_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(strand_mpitest_main STATIC ${STRAND_MPI_TEST_DIR}/mpi_test_main.cpp)
target_link_libraries(strand_mpitest_main PUBLIC strand_parallel GTest::gtest)

# One CTest entry: `filter` is a gtest filter ("" for all cases).
function(strand_add_mpi_entry test_name target np filter)
  set(args)
  if(filter)
    set(args --gtest_filter=${filter})
  endif()
  add_test(NAME ${test_name}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${STRAND_MPIEXEC_EXTRA_FLAGS}
                   ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${target}> ${MPIEXEC_POSTFLAGS} ${args})
  # A failing rank ends the job at once (mpi_test_main.cpp); the timeout is for true hangs.
  set_tests_properties(${test_name} PROPERTIES ENVIRONMENT "${STRAND_MPI_TEST_ENV}" TIMEOUT 120
                       PROCESSORS ${np} SKIP_RETURN_CODE 77 LABELS mpi)
endfunction()

file(GLOB STRAND_MPITEST_SOURCES CONFIGURE_DEPENDS ${STRAND_MPI_TEST_DIR}/*_mpitest.cpp)
foreach(src ${STRAND_MPITEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  set(target parallel_${name})
  add_executable(${target} ${src})
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE strand_mpitest_main ${STRAND_TEST_LIBS})

  set(ranks 1 2 4)
  if(DEFINED STRAND_MPITEST_RANKS_${name})
    set(ranks ${STRAND_MPITEST_RANKS_${name}})
  endif()
  set(gpu_cases ${STRAND_MPITEST_GPU_CASES_${name}})
  list(JOIN gpu_cases ":" gpu_filter)
  foreach(np ${ranks})
    set(excluded ${gpu_cases})
    if(np EQUAL 1)
      list(APPEND excluded ${STRAND_MPITEST_TWO_RANK_CASES_${name}})
    endif()
    list(JOIN excluded ":" excluded_filter)
    if(NOT name IN_LIST STRAND_MPITEST_GPU_ONLY)
      set(filter "")
      if(excluded_filter)
        set(filter "-${excluded_filter}")
      endif()
      strand_add_mpi_entry(parallel.${name}.np${np} ${target} ${np} "${filter}")
    endif()
    if(gpu_filter AND STRAND_TEST_GPU)
      strand_add_mpi_entry(parallel.${name}.gpu.np${np} ${target} ${np} "${gpu_filter}")
    endif()
  endforeach()
endforeach()

add_executable(abort_helper ${STRAND_MPI_TEST_DIR}/abort_helper.cpp)
target_link_libraries(abort_helper PRIVATE strand_parallel)
add_executable(abort_gtest_helper ${STRAND_MPI_TEST_DIR}/abort_gtest_helper.cpp)
target_link_libraries(abort_gtest_helper PRIVATE strand_mpitest_main)

add_executable(parallel_abort_job_test ${STRAND_MPI_TEST_DIR}/abort_job.cpp)
target_link_libraries(parallel_abort_job_test PRIVATE GTest::gtest GTest::gtest_main)
list(JOIN STRAND_MPIEXEC_EXTRA_FLAGS " " STRAND_MPIEXEC_EXTRA_FLAGS_TEXT)
target_compile_definitions(parallel_abort_job_test PRIVATE
  STRAND_MPIEXEC="${MPIEXEC_EXECUTABLE}"
  STRAND_MPIEXEC_NUMPROC_FLAG="${MPIEXEC_NUMPROC_FLAG}"
  STRAND_MPIEXEC_EXTRA_FLAGS="${STRAND_MPIEXEC_EXTRA_FLAGS_TEXT}"
  STRAND_ABORT_HELPER="$<TARGET_FILE:abort_helper>"
  STRAND_ABORT_GTEST_HELPER="$<TARGET_FILE:abort_gtest_helper>")
add_dependencies(parallel_abort_job_test abort_helper abort_gtest_helper)
add_test(NAME parallel.abort_job_test COMMAND parallel_abort_job_test)
set_tests_properties(parallel.abort_job_test PROPERTIES ENVIRONMENT "${STRAND_MPI_TEST_ENV}" TIMEOUT 300
                     PROCESSORS 2 LABELS mpi)
