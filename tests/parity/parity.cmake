# Parity of the gpt model with an independent PyTorch GPT-2 (tests/parity/run_parity.py): runs
# the built `strand` (data prepare, train, eval, resume, export, inspect) in a folder of the build
# tree and compares with float64 PyTorch. Two more entries load that run's export, and a pruned
# export of its checkpoint, with Hugging Face transformers; where transformers is not importable
# they exit 77, which CTest reports as skipped. Needs Debian's python3-torch, python3-h5py and
# python3-numpy, which live in the system interpreter, hence /usr/bin/python3 over any venv
# (the transformers venv is made over it with --system-site-packages).
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
  # The transformers entries run in launch/setup_transformers.sh's venv (the system packages
  # plus a pinned transformers) where it exists, else in the system interpreter, which skips.
  set(strand_transformers_venv "$ENV{STRAND_TRANSFORMERS_VENV}")
  if(NOT strand_transformers_venv)
    set(strand_transformers_venv "$ENV{HOME}/.cache/strand-transformers")
  endif()
  # Looked up at every configure, not cached: launch/setup.sh --tests makes the venv first.
  set(strand_transformers_python ${STRAND_SYSTEM_PYTHON3})
  if(EXISTS ${strand_transformers_venv}/bin/python3)
    set(strand_transformers_python ${strand_transformers_venv}/bin/python3)
  endif()
  add_test(NAME parity.transformers_loads_the_export
           COMMAND ${strand_transformers_python} ${CMAKE_CURRENT_LIST_DIR}/run_parity.py $<TARGET_FILE:strand>
                   --transformers-only ${STRAND_PARITY_WORK})
  set_tests_properties(parity.transformers_loads_the_export PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120
                       LABELS "parity;slow" FIXTURES_REQUIRED strand_parity_run SKIP_RETURN_CODE 77)
  # strand prune of that run's checkpoint, exported and loaded by transformers (pruned_heads).
  add_test(NAME parity.transformers_loads_a_pruned_export
           COMMAND ${strand_transformers_python} ${CMAKE_CURRENT_LIST_DIR}/transformers_pruned.py
                   $<TARGET_FILE:strand> ${STRAND_PARITY_WORK})
  set_tests_properties(parity.transformers_loads_a_pruned_export PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2"
                       TIMEOUT 120 LABELS "parity;slow" FIXTURES_REQUIRED strand_parity_run SKIP_RETURN_CODE 77)
else()
  message(WARNING "strand: no python3 found; the parity test (tests/parity) is not registered")
endif()
