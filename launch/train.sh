#!/usr/bin/env bash
# Launches `strand train CONFIG [--set ...]` under mpirun with a rank count, hosts, threads per
# rank and CPU binding chosen for you, and prints the mpirun line it runs (docs/launching.md).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/train.sh [OPTIONS] CONFIG.yaml [strand train arguments...]

Runs `strand train CONFIG.yaml ...` under mpirun. Everything after CONFIG.yaml goes to strand
unchanged (--set key=value, --peak-tflops, --quiet-config).

Options (before CONFIG.yaml):
  -n, --ranks N        MPI ranks (default: parallel.dp x parallel.sp of the config and its
                       --set overrides, read by `strand config get`)
  --hosts LIST         hosts and slots, h1:4,h2:4 (default: this machine only)
  --hostfile FILE      an mpirun hostfile instead of --hosts
  -t, --threads N      OpenMP/OpenBLAS threads per rank (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS;
                       default: $OMP_NUM_THREADS, else $SLURM_CPUS_PER_TASK, else this
                       machine's cores / ranks on it, at least 1)
  --bind MODE          core: each rank bound to its own N cores (--map-by slot:PE=N --bind-to core);
                       socket: each rank bound to a socket (--map-by socket --bind-to socket);
                       none: no binding (default: core, or none when this machine has fewer cores
                       than ranks x threads)
  --mpirun-arg ARG     one extra argument for mpirun (repeatable), e.g. --mpirun-arg=--report-bindings
  --dry-run            print the mpirun line and exit
  -h, --help           this text

Environment:
  STRAND_BIN           the strand program (default: $STRAND_BUILD_DIR/strand)
  STRAND_BUILD_DIR     build folder, relative to the repository or absolute (default: build)
  MPIRUN               the launcher (default: mpirun)
  STRAND_STOP_GRACE_S  seconds Open MPI waits after a SIGTERM or SIGINT sent to mpirun itself
                       before it kills the ranks, so that they save a checkpoint (default: 30)

Stopping: SIGTERM, SIGINT or SIGHUP to this script reach every rank (through mpirun, as
SIGUSR1); each saves the checkpoint of its step and the job exits 0. Run the same command
to resume.

Examples:
  launch/train.sh -n 2 configs/quickstart.yaml --set train.steps=50
  launch/train.sh --hosts node1:4,node2:4 -t 8 configs/gpt2-124m.yaml --set parallel.dp=8
EOF
}

die() {
  echo "train.sh: error: $*" >&2
  exit 2
}

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ranks="" hosts="" hostfile="" threads="" bind="" dry_run=0
mpirun_extra=()
while (($# > 0)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    -n | --ranks) (($# >= 2)) || die "$1 needs a value"; ranks="$2"; shift 2 ;;
    --ranks=*) ranks="${1#*=}"; shift ;;
    --hosts) (($# >= 2)) || die "$1 needs a value"; hosts="$2"; shift 2 ;;
    --hosts=*) hosts="${1#*=}"; shift ;;
    --hostfile) (($# >= 2)) || die "$1 needs a value"; hostfile="$2"; shift 2 ;;
    --hostfile=*) hostfile="${1#*=}"; shift ;;
    -t | --threads) (($# >= 2)) || die "$1 needs a value"; threads="$2"; shift 2 ;;
    --threads=*) threads="${1#*=}"; shift ;;
    --bind) (($# >= 2)) || die "$1 needs a value"; bind="$2"; shift 2 ;;
    --bind=*) bind="${1#*=}"; shift ;;
    --mpirun-arg) (($# >= 2)) || die "$1 needs a value"; mpirun_extra+=("$2"); shift 2 ;;
    --mpirun-arg=*) mpirun_extra+=("${1#*=}"); shift ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -*) die "unknown option '$1' before the config (strand's own options go after CONFIG.yaml; see --help)" ;;
    *) break ;;
  esac
done
(($# > 0)) || { usage >&2; die "no config given"; }
config="$1"
shift
strand_args=("$@")
[[ -z "$ranks" ]] || is_count "$ranks" || die "-n wants a positive integer, got '$ranks'"
[[ -z "$threads" ]] || is_count "$threads" || die "--threads wants a positive integer, got '$threads'"
case "$bind" in "" | core | socket | none) ;; *) die "--bind wants core, socket or none, got '$bind'" ;; esac
[[ -z "$hosts" || -z "$hostfile" ]] || die "--hosts and --hostfile exclude each other"
[[ -z "$hostfile" || -f "$hostfile" ]] || die "hostfile '$hostfile' not found"
[[ -f "$config" ]] || die "config '$config' not found"

strand="${STRAND_BIN:-}"
if [[ -z "$strand" ]]; then
  build_dir="${STRAND_BUILD_DIR:-build}"
  [[ "$build_dir" == /* ]] || build_dir="$repo/$build_dir"
  strand="$build_dir/strand"
fi
[[ -x "$strand" ]] || die "strand program '$strand' not found (build it: launch/setup.sh, or set STRAND_BUILD_DIR)"

# The rank count defaults to parallel.dp x parallel.sp as strand itself resolves them (the
# file and the --set overrides among the strand arguments): `strand config get` reads the
# config, so this script never parses YAML. The trainer checks dp x sp against the job size.
if [[ -z "$ranks" ]]; then
  sets=()
  for ((i = 0; i < ${#strand_args[@]}; i++)); do
    case "${strand_args[i]}" in
      --set) ((i + 1 < ${#strand_args[@]})) && sets+=(--set "${strand_args[i + 1]}"); i=$((i + 1)) ;;
      --set=*) sets+=(--set "${strand_args[i]#--set=}") ;;
    esac
  done
  # One process outside any launcher: without the launchers' variables (a Slurm batch script
  # has SLURM_NTASKS), strand does not start MPI.
  config_get() {
    env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMIX_RANK -u SLURM_NTASKS OMP_NUM_THREADS=1 \
      "$strand" config get "$1" "$config" "${sets[@]}"
  }
  dp="$(config_get parallel.dp)" || die "cannot read parallel.dp from '$config' (the line above says why); pass -n"
  sp="$(config_get parallel.sp)" || die "cannot read parallel.sp from '$config'; pass -n"
  ranks=$((dp * sp))
  echo "train.sh: $ranks rank(s) = parallel.dp $dp x parallel.sp $sp" >&2
fi

# Ranks on this machine: all of them, unless hosts are named or a Slurm allocation (which
# Open MPI's mpirun reads by itself) spreads them over its nodes.
cores="$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
local_ranks="$ranks"
if [[ -n "$hosts" || -n "$hostfile" || -n "${SLURM_JOB_NODELIST:-}" ]]; then local_ranks=""; fi
if [[ -z "$threads" ]]; then
  if [[ -n "${OMP_NUM_THREADS:-}" ]]; then
    threads="$OMP_NUM_THREADS"
  elif [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
    threads="$SLURM_CPUS_PER_TASK"
  elif [[ -n "$local_ranks" ]]; then
    threads=$((cores / local_ranks > 0 ? cores / local_ranks : 1))
  else
    threads=1
    echo "train.sh: 1 thread per rank (pass -t for the cores per rank of your hosts)" >&2
  fi
fi
is_count "$threads" || die "OMP_NUM_THREADS is '$threads', not a positive integer"
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"

mpirun="${MPIRUN:-mpirun}"
command -v "$mpirun" >/dev/null 2>&1 || die "'$mpirun' not found (install openmpi-bin, or set MPIRUN)"

# Open MPI and MPICH/Intel MPI (Hydra) spell the same requests differently.
if "$mpirun" --version 2>&1 | grep -qE 'Open MPI|OpenRTE'; then flavour=openmpi; else flavour=hydra; fi

oversubscribed=0
if [[ -n "$local_ranks" ]] && ((local_ranks > cores)); then oversubscribed=1; fi
if [[ -z "$bind" ]]; then
  if [[ -n "$local_ranks" ]] && ((local_ranks * threads > cores)); then bind=none; else bind=core; fi
fi

cmd=("$mpirun" -np "$ranks")
if [[ "$flavour" == openmpi ]]; then
  # Open MPI refuses root unless told (containers); these must be in mpirun's own environment.
  if [[ "$(id -u)" == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  [[ -n "$hosts" ]] && cmd+=(--host "$hosts")
  [[ -n "$hostfile" ]] && cmd+=(--hostfile "$hostfile")
  ((oversubscribed)) && cmd+=(--oversubscribe)
  # After forwarding SIGTERM / SIGINT, Open MPI kills the ranks 1 s later unless told to wait:
  # give them time to write the checkpoint of the step they are in (docs/reliability.md).
  cmd+=(--mca odls_base_sigkill_timeout "${STRAND_STOP_GRACE_S:-30}")
  case "$bind" in
    core) cmd+=(--map-by "slot:PE=$threads" --bind-to core) ;;
    socket) cmd+=(--map-by socket --bind-to socket) ;;
    none) cmd+=(--bind-to none) ;;
  esac
  # Open MPI forwards only named variables to ranks on other hosts.
  cmd+=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
  for var in STRAND_PEAK_FLOPS OMP_WAIT_POLICY; do
    if [[ -n "${!var:-}" ]]; then cmd+=(-x "$var"); fi
  done
else
  [[ -n "$hosts" ]] && cmd+=(-hosts "$hosts")
  [[ -n "$hostfile" ]] && cmd+=(-f "$hostfile")
  case "$bind" in
    core) cmd+=(-bind-to "core:$threads") ;;
    socket) cmd+=(-bind-to socket) ;;
    none) cmd+=(-bind-to none) ;;
  esac
fi
cmd+=("${mpirun_extra[@]}" "$strand" train "$config" "${strand_args[@]}")

# The line as one could paste it: words quoted only where the shell needs it.
shown=""
for word in "${cmd[@]}"; do
  if [[ "$word" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then shown+=" $word"; else shown+=" $(printf '%q' "$word")"; fi
done
echo "train.sh: OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads$shown" >&2
((dry_run)) && exit 0
[[ "$flavour" == openmpi ]] || exec "${cmd[@]}"

# A stop asked of this script (a scheduler's SIGTERM, Ctrl-C, a hangup) reaches the ranks as
# SIGUSR1, which mpirun forwards to every rank on every host without ending the job: each rank
# saves the checkpoint of its step and exits 0, and so does mpirun. A SIGTERM or SIGINT sent to
# mpirun itself makes it kill the ranks after odls_base_sigkill_timeout (set above) instead.
# Job control puts mpirun in its own process group, so that a terminal's Ctrl-C reaches this
# script only; its stdin is closed (no rank reads it, and a background read would stop it).
set -m
"${cmd[@]}" </dev/null &
mpirun_pid=$!
trap 'kill -USR1 "$mpirun_pid" 2>/dev/null || true' TERM INT HUP
while true; do
  status=0
  wait "$mpirun_pid" || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # ended; else a trapped signal interrupted wait
done
exit "$status"
