#!/usr/bin/env bash
# Mutation run over the test suite (not in CI): applies each mutant of the table below, one at a
# time, rebuilds, runs the tests, records which tests fail (kill the mutant), and restores the
# file. docs/testing.md says when to run it and holds the last report.
#
#   tests/mutation/run.sh                       every mutant against the whole suite
#   tests/mutation/run.sh --list                the table, nothing run
#   tests/mutation/run.sh --only adamw_decay_sign,causal_boundary -- -L unit
#                                               two mutants against the unit tests
#
# Arguments after -- go to ctest (default: the whole suite). Environment: STRAND_BUILD_DIR
# (default build; it must be configured, e.g. by launch/setup.sh), STRAND_JOBS (build jobs,
# default 2), STRAND_TEST_JOBS (ctest -j, default 2). The report goes to stdout and to
# BUILD/mutation/report.md; each mutant's ctest output to BUILD/mutation/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The mutants: name | file | exact text (must occur once) | replacement | the bug it stands for.
# A mutant whose text no longer occurs is reported as "does not apply": update its row when the
# code it mutates moves.
MUTANTS=(
  "attention_backward_scale|framework/backend/cpu/attention_backward.cpp|dk[j * p.dk_row_stride + x] = ak[x] * scale;|dk[j * p.dk_row_stride + x] = ak[x];|dK misses the softmax scale"
  "causal_boundary|framework/backend/attention_mask.h|if (spec_.causal && k > q) return false;|if (spec_.causal && k >= q) return false;|a causal query no longer sees its own key (the per-pair rule)"
  "adamw_decay_sign|framework/backend/cpu/adamw.cpp|static_cast<T>(1.0 - p.lr * p.weight_decay)|static_cast<T>(1.0 + p.lr * p.weight_decay)|weight decay grows the weights"
  "adamw_bias_correction|framework/optim/adamw.cpp|kp.bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));|kp.bias_correction1 = 1.0;|no bias correction of the first moment"
  "layernorm_mean_term|framework/backend/cpu/norm.cpp|const T a = Centred ? static_cast<T>(sum_dxhat / static_cast<Acc>(n)) : T(0);|const T a = T(0);|LayerNorm backward drops the mean term"
  "ring_merge|framework/backend/cpu/attention_merge.cpp|w2 = std::exp(l2 - lse);|w2 = std::exp(l2 - mx);|the lse merge of two partial results (every ring step) weights the second by the max, not the merged lse"
  "zigzag_mapping|parallel/layout.cpp|Segment{(2 * parts - 1 - r) * len, len}|Segment{(parts + r) * len, len}|zigzag's second chunk of rank r is P + r instead of 2P - 1 - r"
  "dropout_rng_on_resume|models/transformer.cpp|  plan.step = step;|  static int64_t forwards = 0;\n  plan.step = forwards++;|dropout masks follow a per-process counter, which a resume restarts"
  "do_stride|framework/backend/cpu/attention_backward.cpp|const T* gi = d_o + i * p.do_row_stride;|const T* gi = d_o + i * p.o_row_stride;|dO read with O's row stride"
  "grad_local_token_count|framework/train/trainer.cpp|grad_sync_->finish(1.0 / static_cast<double>(pass.scored_tokens));|grad_sync_->finish(1.0 / static_cast<double>(scored));|gradients normalised by the rank's own token count, not the global one"
  "adamw_epsilon_inside_sqrt|framework/backend/cpu/adamw.cpp|(std::sqrt(vi) * inv_sqrt_bc2 + eps)|(std::sqrt(vi * inv_sqrt_bc2 + eps))|AdamW's epsilon and bias correction under the square root"
)

list=0
only=""
ctest_args=()
while (($#)); do
  case "$1" in
    --list) list=1 ;;
    --only) only="$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "run.sh: unknown argument '$1' (see the header of tests/mutation/run.sh)" >&2; exit 2 ;;
  esac
  shift
done

if ((list)); then
  for row in "${MUTANTS[@]}"; do
    IFS='|' read -r name file _ _ what <<<"$row"
    printf '%-28s %-48s %s\n' "$name" "$file" "$what"
  done
  exit 0
fi

build="${STRAND_BUILD_DIR:-build}"
[[ -f "$build/build.ninja" ]] || { echo "run.sh: $build is not configured; run launch/setup.sh first" >&2; exit 2; }
out="$build/mutation"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

# Replaces the one occurrence of $2 in file $1 by $3 ("\n" in $3 is a line break); exit 3 when
# the text does not occur exactly once.
mutate() {
  python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2], sys.argv[3].replace("\\n", "\n")
text = open(path).read()
if text.count(old) != 1:
    sys.exit(3)
open(path, "w").write(text.replace(old, new))
PY
}

backup=""
target=""
restore() {
  if [[ -n "$backup" ]]; then
    cp -p "$backup" "$target"
    touch "$target"  # newer than the mutant's objects, so the next build recompiles it
    rm -f "$backup"
    backup=""
  fi
}
trap restore EXIT
trap 'restore; exit 130' INT TERM

report="$out/report.md"
{
  echo "| mutant | kills | killed by | build + test time |"
  echo "|---|---|---|---|"
} >"$report"
echo "mutation: baseline build" >&2
nice ninja -C "$build" -j "${STRAND_JOBS:-2}" >/dev/null

for row in "${MUTANTS[@]}"; do
  IFS='|' read -r name file old new what <<<"$row"
  if [[ -n "$only" && ",$only," != *",$name,"* ]]; then continue; fi
  echo "mutation: $name ($what)" >&2
  target="$file"
  backup="$(mktemp)"
  cp -p "$file" "$backup"
  if ! mutate "$file" "$old" "$new"; then
    restore
    echo "| $name | - | does not apply: the text is not in $file once | - |" >>"$report"
    continue
  fi
  start=$(date +%s)
  log="$out/$name.log"
  if ! nice ninja -C "$build" -j "${STRAND_JOBS:-2}" >"$log" 2>&1; then
    restore
    echo "| $name | build | the mutant does not compile (see $log) | $(($(date +%s) - start)) s |" >>"$report"
    continue
  fi
  (cd "$build" && ctest --output-on-failure --timeout 600 -j "${STRAND_TEST_JOBS:-2}" "${ctest_args[@]}") >>"$log" 2>&1 || true
  restore
  # ctest lists the failed tests as "  <number> - <name> (Failed)" after "The following tests FAILED:".
  # A test listed "(Not Run)" did not run because a fixture it requires failed (the parity export
  # load after the parity run): it asserted nothing, so it does not count as a kill.
  mapfile -t killers < <(sed -n '/The following tests FAILED:/,$p' "$log" | grep -v '(Not Run)$' |
    sed -n 's/^[[:space:]]*[0-9][0-9]* - \([^ ]*\) (.*/\1/p')
  verdict="${#killers[@]}"
  ((${#killers[@]} < 2)) && verdict="${#killers[@]} (fewer than 2)"
  echo "| $name | $verdict | ${killers[*]:-none: the mutant survived} | $(($(date +%s) - start)) s |" >>"$report"
done

echo "mutation: rebuilding the unmutated tree" >&2
nice ninja -C "$build" -j "${STRAND_JOBS:-2}" >/dev/null
cat "$report"
