#!/usr/bin/env bash
# Data-parallel training on one node: msrun starts one worker per device (docs/distributed.md).
set -euo pipefail

usage() {
  cat <<USAGE
usage: ${0##*/} [options] [--] TRAINING_COMMAND [ARGS...]

Data-parallel training on one node with N devices: runs
  msrun --worker_num=N --local_worker_num=N --master_port=P --log_dir=DIR --join=True TRAINING_COMMAND ARGS...
from the repository root. msrun runs a .py script with python, and gives worker i DEVICE_ID=i
and RANK_ID=i; rank 0 writes the run folder. data.batch_size is per device (global batch N x it).

options (each also settable by the environment variable in brackets):
  --devices N            devices (workers) on this node [DEVICES, default 8]
  --master-port P        port of msrun's scheduler, 1024-65535 [MASTER_PORT, default 8118]
  --log-dir DIR          msrun's logs: worker_<rank>.log, scheduler.log [LOG_DIR, default runs/msrun_logs]
  --cluster-time-out S   seconds the workers wait for each other to start [CLUSTER_TIME_OUT, default msrun's: 600]
  --dry-run              print the msrun command and the environment of each process; start nothing [DRY_RUN=1]
  -h, --help             this text
  (MSRUN: the msrun executable, default msrun)

examples:
  ${0##*/} tools/train_modify.py --config yaml/metfaces.yaml --set data.batch_size=1
  DEVICES=4 ${0##*/} --dry-run tools/train_modify.py --resume runs/metfaces
USAGE
}

# shellcheck source=tools/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEVICES=${DEVICES:-8}
MASTER_PORT=${MASTER_PORT:-8118}
LOG_DIR=${LOG_DIR:-runs/msrun_logs}
CLUSTER_TIME_OUT=${CLUSTER_TIME_OUT:-}
DRY_RUN=${DRY_RUN:-0}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --devices | --devices=*) take DEVICES "$@"; shift "$TAKEN" ;;
    --master-port | --master-port=*) take MASTER_PORT "$@"; shift "$TAKEN" ;;
    --log-dir | --log-dir=*) take LOG_DIR "$@"; shift "$TAKEN" ;;
    --cluster-time-out | --cluster-time-out=*) take CLUSTER_TIME_OUT "$@"; shift "$TAKEN" ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see $PROG -h)" ;;
    *) break ;;  # the training command: everything from here on is its own
  esac
done

normalise_dry_run
check_int "--devices (DEVICES)" "$DEVICES" 1 4096
check_port "--master-port (MASTER_PORT)" "$MASTER_PORT"
[[ -n $LOG_DIR ]] || die "--log-dir (LOG_DIR) must not be empty"
[[ -z $CLUSTER_TIME_OUT ]] || check_int "--cluster-time-out (CLUSTER_TIME_OUT)" "$CLUSTER_TIME_OUT" 1
check_training_command "$@"

# decimal from here on (a leading zero must not read as octal); one node: msrun's default
# scheduler address (127.0.0.1) and rank ids 0 .. N-1
DEVICES=$((10#$DEVICES)) MASTER_PORT=$((10#$MASTER_PORT))
NODES=1 NODE_RANK=0 MASTER_ADDR=""
run_msrun 0 "$@"
