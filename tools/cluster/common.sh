# Shared by the launch scripts beside this file (sourced, not run): errors, option values,
# integer checks, the dry-run switch, and shell quoting for the commands a dry run prints.
# shellcheck shell=bash

PROG=${0##*/}

# One line on stderr, exit code 2 (a usage error: nothing was started).
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 2
}

# take VAR OPTION [VALUE]: VAR = the value of --opt=VALUE or of --opt VALUE; TAKEN = how many
# arguments that used (the caller shifts them).
# shellcheck disable=SC2034  # TAKEN is read by the sourcing script
take() {
  local var=$1 opt=$2
  if [[ $opt == *=* ]]; then
    printf -v "$var" '%s' "${opt#*=}"
    TAKEN=1
  elif (($# >= 3)); then
    printf -v "$var" '%s' "$3"
    TAKEN=2
  else
    die "option $opt needs a value (see $PROG -h)"
  fi
}

# check_int NAME VALUE MIN [MAX]: VALUE is a decimal integer in [MIN, MAX].
check_int() {
  local name=$1 value=$2 min=$3 max=${4:-}
  # at most 9 digits: bash arithmetic would wrap a longer one instead of refusing it
  [[ $value =~ ^[0-9]{1,9}$ ]] || die "$name must be a whole number, got '$value'"
  ((10#$value >= min)) || die "$name must be >= $min, got $value"
  [[ -z $max ]] || ((10#$value <= max)) || die "$name must be <= $max, got $value"
}

# check_port NAME VALUE: the range msrun accepts for its scheduler port.
check_port() {
  check_int "$1" "$2" 1024 65535
}

# DRY_RUN (1/0, true/false, yes/no, on/off, empty = off) as 1 or 0 in DRY_RUN.
normalise_dry_run() {
  case ${DRY_RUN,,} in
    1 | true | yes | on) DRY_RUN=1 ;;
    0 | false | no | off | "") DRY_RUN=0 ;;
    *) die "DRY_RUN must be 1 or 0, got '$DRY_RUN'" ;;
  esac
}

# check_training_command ARG...: a command is given, and the Python script it names exists here
# (a missing script would otherwise fail once per worker, in every worker's log).
check_training_command() {
  (($#)) || die "no training command given (e.g. tools/train_modify.py --config yaml/metfaces.yaml; see $PROG -h)"
  local script=$1
  if [[ $script == python || $script == python3 ]]; then
    script=${2:-}
  fi
  if [[ $script == *.py && ! -f $script ]]; then
    die "training script '$script' not found (run from the repository root, or give its path)"
  fi
}

# quote ARG...: the arguments as one shell line that a shell (or Python's shlex.split) reads back
# as the same words; an argument is single-quoted only where it needs it.
quote() {
  local words=() arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then
      words+=("$arg")
    else
      words+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  printf '%s\n' "${words[*]}"
}

# worker_command PYTHON ARG...: what msrun (which names its interpreter plain python) and the
# rank-table script run for a training command: a script is run with PYTHON, a command that
# starts with python/python3/pytest runs as given.
worker_command() {
  local python=$1
  shift
  WORKER_CMD=("$@")
  if [[ $1 != python && $1 != python3 && $1 != pytest ]]; then
    WORKER_CMD=("$python" "$@")
  fi
}

# run_msrun WITH_NODE_RANK ARG...: msrun for NODES x DEVICES workers, DEVICES of them on this node
# (node NODE_RANK), with the training command ARG...; a dry run prints it and the environment
# msrun gives each process it starts on this node, and starts nothing.
run_msrun() {
  local with_node_rank=$1
  shift
  local world=$((NODES * DEVICES))
  local cmd=("${MSRUN:-msrun}" "--worker_num=$world" "--local_worker_num=$DEVICES")
  [[ -z $MASTER_ADDR ]] || cmd+=("--master_addr=$MASTER_ADDR")
  cmd+=("--master_port=$MASTER_PORT")
  if ((with_node_rank)); then
    cmd+=("--node_rank=$NODE_RANK")
  fi
  cmd+=("--log_dir=$LOG_DIR" "--join=True")
  [[ -z $CLUSTER_TIME_OUT ]] || cmd+=("--cluster_time_out=$CLUSTER_TIME_OUT")
  cmd+=("$@")
  if ((DRY_RUN)); then
    quote "${cmd[@]}"
    describe_msrun_processes "$world" "$@"
    return 0
  fi
  command -v "${cmd[0]}" >/dev/null 2>&1 || die "${cmd[0]} not found: it comes with MindSpore (or set MSRUN)"
  exec "${cmd[@]}"
}

# The processes msrun starts on this node, as comments (msrun sets their environment itself, as
# mindspore/parallel/cluster/process_entity/_api.py does in MindSpore 2.10; it resolves a host
# name in MS_SCHED_HOST to its address).
describe_msrun_processes() {
  local world=$1 sched_host=${MASTER_ADDR:-127.0.0.1} local_rank rank
  shift
  worker_command python "$@"
  local common="MS_WORKER_NUM=$world MS_SCHED_HOST=$sched_host MS_SCHED_PORT=$MASTER_PORT MS_TOPO_TIMEOUT=${CLUSTER_TIME_OUT:-600}"
  echo "# msrun starts, on this node, $DEVICES worker(s) of $world (RANK_ID = node_rank x $DEVICES + DEVICE_ID), each running:"
  echo "#   $(quote "${WORKER_CMD[@]}")"
  for ((local_rank = 0; local_rank < DEVICES; local_rank++)); do
    rank=$((NODE_RANK * DEVICES + local_rank))
    echo "# worker: MS_ROLE=MS_WORKER $common MS_NODE_ID=$rank RANK_ID=$rank DEVICE_ID=$local_rank $(quote "log=$LOG_DIR/worker_$rank.log")"
  done
  echo "# and, on the node at $sched_host only, the scheduler (the same command): MS_ROLE=MS_SCHED $common $(quote "log=$LOG_DIR/scheduler.log")"
}
