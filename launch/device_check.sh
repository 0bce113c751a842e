#!/usr/bin/env bash
# The GPU check of the CUDA backend, in two halves (docs/cuda.md, "The device check"):
#
#   launch/device_check.sh pack     here, on the build machine: builds strand and the `gpu`-labelled
#                                   test programs for carrying (CUDA on, MPI and oneDNN off, portable
#                                   x86-64 code) into build-device/, and packs them with the shared
#                                   libraries they need into build-device/bundle/strand-device.tar.xz
#   launch/device_check.sh run      there, on a GPU machine with the CUDA toolkit, CMake and PyTorch
#                                   but no MPI, HDF5, yaml-cpp or network: unpacks the bundle, runs
#                                   every `gpu` test program and the benchmark (GPT-2 124M bf16
#                                   training tokens/s at seq 1024 against torch eager with SDPA, and
#                                   torch.matmul's GEMM rate), and writes $OUT/device_check.json and
#                                   $OUT/device_check.log ($OUT defaults to ./device_check_out).
#
# The device call (carry the bundle, nothing is built there):
#   run(command="bash launch/device_check.sh run", carry=["build-device/bundle"], timeout_s=540)
# Without a GPU `run` still runs every test program (each test says "skipped: no GPU"), records the
# benchmark as not run, and writes the JSON: that is the rehearsal on a CPU machine.
# Why carried binaries and not a build there: the build needs HDF5, yaml-cpp, CLI11, GoogleTest
# and OpenBLAS, which that machine lacks and cannot fetch. The CUDA runtime and NCCL are taken from
# the machine's own toolkit / PyTorch wheels (too large to carry); everything else comes along.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode="${1:-}"
build="${STRAND_DEVICE_BUILD_DIR:-build-device}"
bundle_dir="$build/bundle"
tarball="$bundle_dir/strand-device.tar.xz"
limit_mib=56  # of the 64 MiB a device call carries, with room for the source tree

# The test programs labelled `gpu` in tests/CMakeLists.txt, as build targets.
gpu_targets() {
  sed -n 's/^set(STRAND_TEST_LABELS_\([^ ]*\) \(.*\))$/\1 \2/p' tests/CMakeLists.txt |
    awk '{for (i = 2; i <= NF; ++i) if ($i == "gpu") {gsub("/", "_", $1); print $1}}'
}

# Shared libraries of the given programs that the device machine lacks: all but the C library,
# the CUDA driver and runtime, cuBLAS and NCCL (that machine's toolkit and wheels hold those).
carried_libs() {
  ldd "$@" | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libpthread|librt|libdl|libresolv|ld-linux[^/]*)\.so|/libcuda\.so|/libcudart\.so|/libcublas(Lt)?\.so|/libnccl\.so'
}

pack() {
  command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "device_check: pack needs nvcc" >&2; exit 1; }
  mapfile -t targets < <(gpu_targets)
  echo "device_check: gpu test programs: ${targets[*]}"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRAND_CUDA=ON -DSTRAND_MPI=OFF \
    -DSTRAND_ONEDNN=OFF -DSTRAND_PORTABLE=ON >/dev/null || exit 1
  ninja -C "$build" -j "${STRAND_JOBS:-2}" strand "${targets[@]}" || exit 1
  local stage="$build/stage"
  rm -rf "$stage" "$bundle_dir"
  mkdir -p "$stage/tests" "$stage/lib" "$bundle_dir"
  # strand beside tests/: the launch tests find BUILD/strand from BUILD/tests/<program>.
  cp "$build/strand" "$stage/strand"
  for t in "${targets[@]}"; do cp "$build/tests/$t" "$stage/tests/$t"; done
  strip --strip-unneeded "$stage/strand" "$stage"/tests/*
  carried_libs "$stage/strand" "$stage"/tests/* | while read -r lib; do cp -L "$lib" "$stage/lib/"; done
  printf '%s\n' "${targets[@]}" >"$stage/gpu_tests.txt"
  git -C "$root" rev-parse HEAD >"$stage/commit.txt" 2>/dev/null || true
  tar -C "$stage" -cJf "$tarball" . || exit 1
  local mib=$(( $(stat -c %s "$tarball") / 1048576 ))
  echo "device_check: $tarball: ${mib} MiB ($(ls "$stage/lib" | wc -l) libraries, ${#targets[@]} test programs)"
  ((mib <= limit_mib)) || { echo "device_check: the bundle is over ${limit_mib} MiB" >&2; exit 1; }
}

# The folders holding a library that the machine itself provides, for LD_LIBRARY_PATH.
system_lib_dirs() {
  local name dirs=()
  for name in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
    local found
    found=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets /usr/lib/x86_64-linux-gnu \
      /opt /usr/local/lib /usr/lib/python3* -name "$name" 2>/dev/null | head -1)
    [[ -n "$found" ]] && dirs+=("$(dirname "$found")")
  done
  printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd: -
}

run() {
  local out="${OUT:-$root/device_check_out}"
  mkdir -p "$out"
  local log="$out/device_check.log" work
  work=$(mktemp -d /tmp/strand_device.XXXXXX)
  exec > >(tee "$log") 2>&1
  echo "device_check: run at $(date -u +%FT%TZ) on $(hostname)"
  [[ -f "$tarball" ]] || { echo "device_check: no $tarball (run 'launch/device_check.sh pack' first)"; exit 1; }
  local bin="$work/bin" results="$work/results"
  mkdir -p "$bin" "$results"
  tar -C "$bin" -xJf "$tarball" || exit 1
  # Only strand's programs see the carried libraries (an older libstdc++ among them): PyTorch
  # keeps the machine's own.
  local libs="$bin/lib:$(system_lib_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export STRAND_BIN="$bin/strand" OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
  local gpus=0
  command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  echo "device_check: bundle of commit $(cat "$bin/commit.txt" 2>/dev/null), $gpus GPU(s)"
  nvidia-smi -L 2>/dev/null || true
  LD_LIBRARY_PATH="$libs" ldd "$bin/strand" | grep 'not found' >"$results/missing_libs.txt" && cat "$results/missing_libs.txt"

  # The tests: each program once, its own gtest JSON; a test program that crashes is a failure.
  while read -r t; do
    echo "device_check: test $t"
    LD_LIBRARY_PATH="$libs" timeout 240 "$bin/tests/$t" --gtest_output="json:$results/test_$t.json" >"$results/test_$t.out" 2>&1
    echo $? >"$results/test_$t.rc"
    tail -n 5 "$results/test_$t.out"
  done <"$bin/gpu_tests.txt"

  # The benchmark, only with a GPU: strand and torch on the same GPT-2 124M shape, bf16, seq 1024.
  local batch="${STRAND_BENCH_BATCH:-8}"
  if ((gpus > 0)); then
    echo "device_check: bench strand (GPT-2 124M, bf16, batch $batch x 1024)"
    LD_LIBRARY_PATH="$libs" timeout 150 "$bin/strand" bench train "$root/configs/gpt2-124m.yaml" --steps 5 --warmup 2 \
      --set run.device=cuda --set precision.compute=bf16 --set data.batch_size="$batch" \
      --set run.dir="$work/run" >"$results/bench_strand.out" 2>&1
    echo $? >"$results/bench_strand.rc"
    tail -n 3 "$results/bench_strand.out"
    echo "device_check: bench torch (the same shape, eager, SDPA, bf16 autocast)"
    timeout 120 python3 "$root/launch/torch_gpu_bench.py" gpt --batch "$batch" >"$results/bench_torch.out" 2>&1
    echo $? >"$results/bench_torch.rc"
    timeout 60 python3 "$root/launch/torch_gpu_bench.py" gemm >"$results/gemm_torch.out" 2>&1
    echo $? >"$results/gemm_torch.rc"
    tail -n 2 "$results/bench_torch.out" "$results/gemm_torch.out"
  fi
  python3 - "$results" "$gpus" "$out/device_check.json" <<'PY'
import glob, json, os, sys
results, gpus, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def read(name):
    try:
        with open(os.path.join(results, name)) as f:
            return f.read()
    except OSError:
        return None
def last_json(text):
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None
summary = {"gpus": gpus, "missing_libraries": (read("missing_libs.txt") or "").split("\n")[:-1], "tests": {}}
totals = {"passed": 0, "failed": 0, "skipped": 0}
for rc_file in sorted(glob.glob(os.path.join(results, "test_*.rc"))):
    name = os.path.basename(rc_file)[5:-3]
    rc = int(read(os.path.basename(rc_file)) or -1)
    entry = {"exit_code": rc, "passed": 0, "failed": 0, "skipped": 0, "failures": []}
    report = read(f"test_{name}.json")
    if report:
        for suite in json.loads(report).get("testsuites", []):
            for case in suite.get("testsuite", []):
                full = f"{suite['name']}.{case['name']}"
                if case.get("failures"):
                    entry["failed"] += 1
                    entry["failures"].append({"test": full, "message": case["failures"][0].get("failure", "")[:500]})
                elif case.get("result") == "SKIPPED":
                    entry["skipped"] += 1
                else:
                    entry["passed"] += 1
    if rc != 0 and not entry["failed"]:
        entry["failed"] = 1
        entry["failures"].append({"test": name, "message": (read(f"test_{name}.out") or "")[-500:]})
    for k in totals:
        totals[k] += entry[k]
    summary["tests"][name] = entry
summary["test_totals"] = totals
if gpus == 0:
    summary["bench"] = "not run: no GPU"
else:
    strand = last_json(read("bench_strand.out"))
    torch_gpt = last_json(read("bench_torch.out"))
    gemm = last_json(read("gemm_torch.out"))
    bench = {"strand": strand or {"error": (read("bench_strand.out") or "")[-500:]},
             "torch_eager_sdpa": torch_gpt or {"error": (read("bench_torch.out") or "")[-500:]},
             "torch_matmul": gemm or {"error": (read("gemm_torch.out") or "")[-500:]},
             "strand_gemm": "not run: strand bench ops has no CUDA mode in this build"}
    s_tok = (strand or {}).get("tokens_per_s")
    t_tok = (torch_gpt or {}).get("tokens_per_s")
    if s_tok and t_tok:
        bench["strand_over_torch"] = s_tok / t_tok
    summary["bench"] = bench
summary["ok"] = totals["failed"] == 0 and not summary["missing_libraries"]
with open(path, "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps({"ok": summary["ok"], "test_totals": totals,
                  "bench": summary["bench"] if isinstance(summary["bench"], str) else "see device_check.json"}))
PY
  rm -rf "$work"
}

case "$mode" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: launch/device_check.sh pack | run" >&2; exit 2 ;;
esac
