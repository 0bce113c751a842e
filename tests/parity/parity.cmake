# Parity of the gpt model with an independent PyTorch GPT-2 (tests/parity/run_parity.py): runs
# the built `strand` (data prepare, train, eval, resume, export, inspect) in a folder of the build
# tree and compares with float64 PyTorch. A second entry loads that run's export with Hugging
# Face transformers; where transformers is not importable it exits 77, which CTest reports as
# skipped. Needs Debian's python3-torch, python3-h5py and python3-numpy, which live in the
# system interpreter, hence /usr/bin/python3 over any venv.
find_program(STRAND_SYSTEM_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT STRAND_SYSTEM_PYTHON3)
  find_program(STRAND_SYSTEM_PYTHON3 python3)
endif()
if(STRAND_SYSTEM_PYTHON3)
  set(STRAND_PARITY_WORK ${CMAKE_CURRENT_BINARY_DIR}/parity_work)
  add_test(NAME parity.gpt_matches_pytorch
           COMMAND ${STRAND_SYSTEM_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/run_parity.py $<TARGET_FILE:strand>
                   --work ${STRAND_PARITY_WORK} --fresh)
  set_tests_properties(parity.gpt_matches_pytorch PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 300
                       LABELS "parity;slow" FIXTURES_SETUP strand_parity_run)
  add_test(NAME parity.transformers_loads_the_export
           COMMAND ${STRAND_SYSTEM_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/run_parity.py $<TARGET_FILE:strand>
                   --transformers-only ${STRAND_PARITY_WORK})
  set_tests_properties(parity.transformers_loads_the_export PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120
                       LABELS "parity;slow" FIXTURES_REQUIRED strand_parity_run SKIP_RETURN_CODE 77)
else()
  message(WARNING "strand: no python3 found; the parity test (tests/parity) is not registered")
endif()
