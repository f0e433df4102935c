#!/usr/bin/env bash
# Data-parallel training on Ascend from a rank table: one process per device (docs/distributed.md).
set -euo pipefail

usage() {
  cat <<USAGE
usage: ${0##*/} --rank-table FILE [options] [--] TRAINING_COMMAND [ARGS...]

The older Ascend form of data-parallel training (HCCL set up from a rank table JSON instead of
msrun's scheduler). Starts one background process per device on this node, each with
  RANK_TABLE_FILE=FILE RANK_SIZE=M*N RANK_ID=R*N+i DEVICE_ID=FIRST+i
exported (M nodes, N devices per node, node rank R, i = 0 .. N-1), its output in
DIR/rank_<RANK_ID>.log; waits for all of them, and when one fails stops the others and exits
non-zero. A .py script runs with python. Several nodes: run it once on every node with its
--node-rank; the run folder and the inputs must be on a filesystem shared by all nodes.
The rank table is checked first: it must list M*N devices, and list rank RANK_ID as device
DEVICE_ID for every process started here.

options (each also settable by the environment variable in brackets):
  --rank-table FILE      the rank table (hccl.json) [RANK_TABLE_FILE, required]
  --devices N            devices (processes) on this node [DEVICES, default 8]
  --nodes M              number of nodes [NODES, default 1]
  --node-rank R          this node's rank, 0 .. M-1 [NODE_RANK, default 0]
  --first-device K       DEVICE_ID of this node's first process [FIRST_DEVICE, default 0]
  --log-dir DIR          one log per process, rank_<RANK_ID>.log [LOG_DIR, default runs/rank_logs]
  --dry-run              print each process's environment and command; start nothing [DRY_RUN=1]
  -h, --help             this text
  (PYTHON: the interpreter for a .py script and for reading the rank table, default python)

example (one Ascend node, 8 NPUs):
  ${0##*/} --rank-table hccl_8p.json tools/train_modify.py --config yaml/metfaces.yaml --set run.device=Ascend --set data.batch_size=1
USAGE
}

# shellcheck source=tools/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RANK_TABLE_FILE=${RANK_TABLE_FILE:-}
DEVICES=${DEVICES:-8}
NODES=${NODES:-1}
NODE_RANK=${NODE_RANK:-0}
FIRST_DEVICE=${FIRST_DEVICE:-0}
LOG_DIR=${LOG_DIR:-runs/rank_logs}
DRY_RUN=${DRY_RUN:-0}
PYTHON=${PYTHON:-python}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --rank-table | --rank-table=*) take RANK_TABLE_FILE "$@"; shift "$TAKEN" ;;
    --devices | --devices=*) take DEVICES "$@"; shift "$TAKEN" ;;
    --nodes | --nodes=*) take NODES "$@"; shift "$TAKEN" ;;
    --node-rank | --node-rank=*) take NODE_RANK "$@"; shift "$TAKEN" ;;
    --first-device | --first-device=*) take FIRST_DEVICE "$@"; shift "$TAKEN" ;;
    --log-dir | --log-dir=*) take LOG_DIR "$@"; shift "$TAKEN" ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see $PROG -h)" ;;
    *) break ;;  # the training command: everything from here on is its own
  esac
done

normalise_dry_run
[[ -n $RANK_TABLE_FILE ]] || die "--rank-table (RANK_TABLE_FILE) is required: the rank table JSON"
[[ -f $RANK_TABLE_FILE ]] || die "rank table '$RANK_TABLE_FILE' not found"
check_int "--devices (DEVICES)" "$DEVICES" 1 4096
check_int "--nodes (NODES)" "$NODES" 1 4096
check_int "--node-rank (NODE_RANK)" "$NODE_RANK" 0 $((10#$NODES - 1))
check_int "--first-device (FIRST_DEVICE)" "$FIRST_DEVICE" 0 4095
[[ -n $LOG_DIR ]] || die "--log-dir (LOG_DIR) must not be empty"
check_training_command "$@"

DEVICES=$((10#$DEVICES)) NODES=$((10#$NODES)) NODE_RANK=$((10#$NODE_RANK)) FIRST_DEVICE=$((10#$FIRST_DEVICE))
RANK_SIZE=$((NODES * DEVICES))
FIRST_RANK=$((NODE_RANK * DEVICES))
# absolute: a training script may change its working directory, HCCL reads the file later
RANK_TABLE_FILE=$(cd "$(dirname "$RANK_TABLE_FILE")" && pwd)/$(basename "$RANK_TABLE_FILE")

# The rank table must describe the job launched here: a mismatch otherwise shows up as HCCL
# waiting for devices that never join. (Rank table version 1.0: server_list[].device[] with
# device_id and rank_id.)
check_rank_table() {
  local problem
  problem=$("$PYTHON" - "$RANK_TABLE_FILE" "$RANK_SIZE" "$FIRST_RANK" "$FIRST_DEVICE" "$DEVICES" 2>&1 <<'PY'
import json, sys
path, size, first_rank, first_device, local = sys.argv[1], *map(int, sys.argv[2:])
try:
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    servers = table["server_list"]
    ranks = {int(d["rank_id"]): (int(d["device_id"]), s.get("server_id", "?")) for s in servers for d in s["device"]}
except (OSError, ValueError) as exc:
    sys.exit(f"rank table {path}: not readable as JSON ({exc})")
except (KeyError, TypeError, AttributeError) as exc:
    sys.exit(f"rank table {path}: not a rank table of version 1.0 (server_list[].device[] with "
             f"device_id and rank_id): {type(exc).__name__} {exc}")
if len(ranks) != size:
    sys.exit(f"rank table {path} lists {len(ranks)} devices, but nodes x devices = {size}")
for i in range(local):
    rank, device = first_rank + i, first_device + i
    if rank not in ranks:
        sys.exit(f"rank table {path} has no rank_id {rank}")
    if ranks[rank][0] != device:
        sys.exit(f"rank table {path} lists rank {rank} as device {ranks[rank][0]} of server {ranks[rank][1]}, "
                 f"but it would start here as DEVICE_ID {device} (check --node-rank, --first-device)")
PY
  ) || die "$(printf '%s' "$problem" | tail -n 1)"
}
check_rank_table

worker_command "$PYTHON" "$@"

# rank_env I: the environment of this node's I-th process
rank_env() {
  RANK_ENV=("RANK_TABLE_FILE=$RANK_TABLE_FILE" "RANK_SIZE=$RANK_SIZE" "RANK_ID=$((FIRST_RANK + $1))"
    "DEVICE_ID=$((FIRST_DEVICE + $1))")
}

if ((DRY_RUN)); then
  echo "mkdir -p $(quote "$LOG_DIR")"
  for ((i = 0; i < DEVICES; i++)); do
    rank_env "$i"
    echo "$(quote "${RANK_ENV[@]}" "${WORKER_CMD[@]}") > $(quote "$LOG_DIR/rank_$((FIRST_RANK + i)).log") 2>&1 &"
  done
  echo "wait  # each of them; when one fails, the others are stopped"
  exit 0
fi

mkdir -p "$LOG_DIR"
PIDS=() RANKS=()
stop_all() {  # the processes this script started (by their pid), then wait for them
  local pid
  for pid in "${PIDS[@]}"; do
    [[ -z $pid ]] || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    [[ -z $pid ]] || wait "$pid" 2>/dev/null || true
  done
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

for ((i = 0; i < DEVICES; i++)); do
  rank_env "$i"
  env "${RANK_ENV[@]}" "${WORKER_CMD[@]}" >"$LOG_DIR/rank_$((FIRST_RANK + i)).log" 2>&1 &
  PIDS+=("$!")
  RANKS+=("$((FIRST_RANK + i))")
done
echo "$PROG: started ranks ${RANKS[0]} .. ${RANKS[-1]} of $RANK_SIZE; logs in $LOG_DIR/rank_<rank>.log" >&2

# poll: a failed rank would leave the others waiting in a collective, so stop them at once
running=$DEVICES
while ((running > 0)); do
  for i in "${!PIDS[@]}"; do
    pid=${PIDS[i]}
    if [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null; then
      continue  # already reaped, or still running
    fi
    if wait "$pid"; then status=0; else status=$?; fi
    PIDS[i]=""
    running=$((running - 1))
    if ((status != 0)); then
      echo "$PROG: rank ${RANKS[i]} failed (exit $status), see $LOG_DIR/rank_${RANKS[i]}.log; stopping the others" >&2
      stop_all
      exit 1
    fi
  done
  ((running == 0)) || sleep 1
done
echo "$PROG: all $DEVICES ranks finished" >&2
