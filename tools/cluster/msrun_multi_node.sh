#!/usr/bin/env bash
# Data-parallel training on several nodes: run this once on every node (docs/distributed.md).
set -euo pipefail

usage() {
  cat <<USAGE
usage: ${0##*/} --nodes M --node-rank R --master-addr HOST [options] [--] TRAINING_COMMAND [ARGS...]

Data-parallel training on M nodes with N devices each (M x N workers). Run it ONCE ON EVERY NODE,
with the same options except --node-rank (0 on the node at --master-addr, which also runs
msrun's scheduler; 1 .. M-1 on the others), from the same repository path. It runs
  msrun --worker_num=M*N --local_worker_num=N --master_addr=HOST --master_port=P --node_rank=R
        --log_dir=DIR --join=True TRAINING_COMMAND ARGS...
Worker i of node R gets DEVICE_ID=i and RANK_ID=R*N+i. Rank 0 (node 0) writes the run folder,
and every worker reads the config, data, weights and (on --resume) the checkpoint at the same
paths: the run folder must be on a filesystem shared by all nodes, and so must the inputs.

options (each also settable by the environment variable in brackets):
  --nodes M              number of nodes [NODES, required]
  --node-rank R          this node's rank, 0 .. M-1 [NODE_RANK, required]
  --master-addr HOST     address of node 0, reachable from every node [MASTER_ADDR, required]
  --master-port P        port of msrun's scheduler on node 0, 1024-65535 [MASTER_PORT, default 8118]
  --devices N            devices (workers) per node, the same on every node [DEVICES, default 8]
  --log-dir DIR          msrun's logs: worker_<rank>.log (scheduler.log on node 0) [LOG_DIR, default runs/msrun_logs]
  --cluster-time-out S   seconds the nodes wait for each other to start [CLUSTER_TIME_OUT, default msrun's: 600]
  --dry-run              print the msrun command and the environment of each process; start nothing [DRY_RUN=1]
  -h, --help             this text
  (MSRUN: the msrun executable, default msrun)

example (2 nodes x 8 devices, global batch 16 at data.batch_size=1):
  node 0: ${0##*/} --nodes 2 --node-rank 0 --master-addr 10.0.0.1 tools/train_modify.py --config yaml/metfaces.yaml --set data.batch_size=1
  node 1: ${0##*/} --nodes 2 --node-rank 1 --master-addr 10.0.0.1 tools/train_modify.py --config yaml/metfaces.yaml --set data.batch_size=1
USAGE
}

# shellcheck source=tools/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NODES=${NODES:-}
NODE_RANK=${NODE_RANK:-}
MASTER_ADDR=${MASTER_ADDR:-}
MASTER_PORT=${MASTER_PORT:-8118}
DEVICES=${DEVICES:-8}
LOG_DIR=${LOG_DIR:-runs/msrun_logs}
CLUSTER_TIME_OUT=${CLUSTER_TIME_OUT:-}
DRY_RUN=${DRY_RUN:-0}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --nodes | --nodes=*) take NODES "$@"; shift "$TAKEN" ;;
    --node-rank | --node-rank=*) take NODE_RANK "$@"; shift "$TAKEN" ;;
    --master-addr | --master-addr=*) take MASTER_ADDR "$@"; shift "$TAKEN" ;;
    --master-port | --master-port=*) take MASTER_PORT "$@"; shift "$TAKEN" ;;
    --devices | --devices=*) take DEVICES "$@"; shift "$TAKEN" ;;
    --log-dir | --log-dir=*) take LOG_DIR "$@"; shift "$TAKEN" ;;
    --cluster-time-out | --cluster-time-out=*) take CLUSTER_TIME_OUT "$@"; shift "$TAKEN" ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see $PROG -h)" ;;
    *) break ;;  # the training command: everything from here on is its own
  esac
done

normalise_dry_run
[[ -n $NODES ]] || die "--nodes (NODES) is required: the number of nodes"
check_int "--nodes (NODES)" "$NODES" 1 4096
[[ -n $NODE_RANK ]] || die "--node-rank (NODE_RANK) is required: 0 on the node at --master-addr, 1 .. $((10#$NODES - 1)) on the others"
check_int "--node-rank (NODE_RANK)" "$NODE_RANK" 0 $((10#$NODES - 1))
[[ -n $MASTER_ADDR ]] || die "--master-addr (MASTER_ADDR) is required: the address of node 0, reachable from every node"
# a loopback scheduler address on several nodes: every node would look for the scheduler on itself
if ((10#$NODES > 1)) && [[ $MASTER_ADDR == 127.* || $MASTER_ADDR == localhost || $MASTER_ADDR == ::1 ]]; then
  die "--master-addr $MASTER_ADDR is a loopback address: give node 0's address that the other nodes reach"
fi
[[ $MASTER_ADDR =~ ^[A-Za-z0-9.:_-]+$ ]] || die "--master-addr must be an IP address or a host name, got '$MASTER_ADDR'"
check_port "--master-port (MASTER_PORT)" "$MASTER_PORT"
check_int "--devices (DEVICES)" "$DEVICES" 1 4096
[[ -n $LOG_DIR ]] || die "--log-dir (LOG_DIR) must not be empty"
[[ -z $CLUSTER_TIME_OUT ]] || check_int "--cluster-time-out (CLUSTER_TIME_OUT)" "$CLUSTER_TIME_OUT" 1
check_training_command "$@"

# decimal from here on (a leading zero must not read as octal in the rank arithmetic)
NODES=$((10#$NODES)) NODE_RANK=$((10#$NODE_RANK)) DEVICES=$((10#$DEVICES)) MASTER_PORT=$((10#$MASTER_PORT))
run_msrun 1 "$@"
