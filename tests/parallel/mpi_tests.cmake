# Multi-rank tests, included from tests/CMakeLists.txt. Each tests/parallel/*_mpitest.cpp is one
# GoogleTest program (main in mpi_test_main.cpp) that CTest runs under mpiexec with 1, 2 and 4
# ranks as <name>_np<P>; abort_job_test runs abort_helper jobs to check that a failing rank ends
# the whole job. The suffix keeps these sources out of the single-process *_test.cpp glob.
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

set(STRAND_MPI_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(strand_mpitest_main STATIC ${STRAND_MPI_TEST_DIR}/mpi_test_main.cpp)
target_link_libraries(strand_mpitest_main PUBLIC strand_parallel GTest::gtest)

file(GLOB STRAND_MPITEST_SOURCES CONFIGURE_DEPENDS ${STRAND_MPI_TEST_DIR}/*_mpitest.cpp)
foreach(src ${STRAND_MPITEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE strand_mpitest_main)
  foreach(np 1 2 4)
    add_test(NAME ${name}_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${STRAND_MPIEXEC_EXTRA_FLAGS}
                     ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${name}> ${MPIEXEC_POSTFLAGS})
    # A rank stuck in a collective after another rank's failed assertion ends at the timeout.
    set_tests_properties(${name}_np${np} PROPERTIES ENVIRONMENT "${STRAND_MPI_TEST_ENV}" TIMEOUT 120
                         PROCESSORS ${np})
  endforeach()
endforeach()

add_executable(abort_helper ${STRAND_MPI_TEST_DIR}/abort_helper.cpp)
target_link_libraries(abort_helper PRIVATE strand_parallel)

add_executable(abort_job_test ${STRAND_MPI_TEST_DIR}/abort_job.cpp)
target_link_libraries(abort_job_test PRIVATE GTest::gtest GTest::gtest_main)
list(JOIN STRAND_MPIEXEC_EXTRA_FLAGS " " STRAND_MPIEXEC_EXTRA_FLAGS_TEXT)
target_compile_definitions(abort_job_test PRIVATE
  STRAND_MPIEXEC="${MPIEXEC_EXECUTABLE}"
  STRAND_MPIEXEC_NUMPROC_FLAG="${MPIEXEC_NUMPROC_FLAG}"
  STRAND_MPIEXEC_EXTRA_FLAGS="${STRAND_MPIEXEC_EXTRA_FLAGS_TEXT}"
  STRAND_ABORT_HELPER="$<TARGET_FILE:abort_helper>")
add_dependencies(abort_job_test abort_helper)
add_test(NAME abort_job_test COMMAND abort_job_test)
set_tests_properties(abort_job_test PROPERTIES ENVIRONMENT "${STRAND_MPI_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
