"""The cluster launch scripts (tools/cluster/*.sh), without MindSpore: their dry runs print the
commands and environments they would start (checked here for 1 node x 8 devices and 2 nodes x 4);
their real runs go to a stand-in msrun (MSRUN) or a stand-in training script, so the tests also
prove that what a dry run prints is what runs. Bad arguments: one line, exit code 2.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(REPO, "tools", "cluster")
SINGLE, MULTI, RANKTABLE = "msrun_single_node.sh", "msrun_multi_node.sh", "ranktable_ascend.sh"
# the variables the scripts read: none may leak in from the environment the tests run in
SCRIPT_VARS = ("DEVICES", "NODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "LOG_DIR", "CLUSTER_TIME_OUT",
               "DRY_RUN", "RANK_TABLE_FILE", "FIRST_DEVICE", "MSRUN", "PYTHON")
# a training command with arguments a shell would split or expand, were they passed on unquoted
TRAIN = ["tools/train_modify.py", "--config", "yaml/metfaces.yaml", "--set", "run.out_dir=runs/with space",
         "--set", "run.device=Ascend", "--set", "data.path=it's $HOME/*", "--max-steps", "10"]


def run_script(name, args, env=None, timeout=60):
    base = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
    return subprocess.run(["bash", os.path.join(CLUSTER, name)] + list(args), cwd=REPO, capture_output=True,
                          text=True, env=dict(base, **(env or {})), timeout=timeout)


def dry_run(name, args, env=None):
    proc = run_script(name, ["--dry-run"] + list(args), env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def msrun_plan(lines):
    """(msrun's argv, [the environment msrun gives each worker on this node]) from a dry run."""
    argv = shlex.split(lines[0])
    workers = []
    for line in lines[1:]:
        if line.startswith("#   "):  # the command msrun runs in each worker
            workers.append({"command": shlex.split(line[1:])})
        if line.startswith("# worker:"):
            workers.append(dict(word.split("=", 1) for word in shlex.split(line[len("# worker:"):])))
    return argv, [dict(workers[0], **w) for w in workers[1:]]


def msrun_options(argv):
    """{option: value} of msrun's own options, and the training command after them."""
    options, i = {}, 1
    while argv[i].startswith("--"):
        key, _, value = argv[i].partition("=")
        options[key] = value
        i += 1
    return options, argv[i:]


def rank_table(path, nodes, devices):
    servers = [{"server_id": f"10.0.0.{n + 1}", "host_nic_ip": "reserve",
                "device": [{"device_id": str(d), "device_ip": f"192.168.{d}.{n + 1}", "rank_id": str(n * devices + d)}
                           for d in range(devices)]} for n in range(nodes)]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"version": "1.0", "server_count": str(nodes), "server_list": servers, "status": "completed"}, fh)
    return str(path)


def ranktable_plan(lines):
    """[(environment, command, log file)] for each process a rank-table dry run would start, from
    its lines ``NAME=VALUE ... COMMAND ... > LOG 2>&1 &``."""
    plan = []
    for line in lines:
        words = shlex.split(line)
        if words[0] in ("mkdir", "wait"):
            continue
        assert words[-4] == ">" and words[-2:] == ["2>&1", "&"], line
        words, log = words[:-4], words[-3]
        env = {}
        while re.match(r"[A-Z_]+=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        plan.append((env, words, log))
    return plan


# ----------------------------------------------------------------- msrun, one node
def test_single_node_runs_msrun_with_one_worker_per_device():
    argv, workers = msrun_plan(dry_run(SINGLE, TRAIN))
    options, command = msrun_options(argv)
    assert argv[0] == "msrun"
    assert options == {"--worker_num": "8", "--local_worker_num": "8", "--master_port": "8118",
                       "--log_dir": "runs/msrun_logs", "--join": "True"}
    assert command == TRAIN  # each argument one word, as given
    assert [w["RANK_ID"] for w in workers] == [str(r) for r in range(8)]
    assert [w["DEVICE_ID"] for w in workers] == [str(r) for r in range(8)]
    assert [w["MS_NODE_ID"] for w in workers] == [str(r) for r in range(8)]
    assert {w["MS_TOPO_TIMEOUT"] for w in workers} == {"600"}  # msrun's default --cluster_time_out
    assert {w["MS_WORKER_NUM"] for w in workers} == {"8"} and {w["MS_ROLE"] for w in workers} == {"MS_WORKER"}
    assert workers[0]["command"] == ["python"] + TRAIN  # msrun's own interpreter name, whatever PYTHON says
    assert msrun_plan(dry_run(SINGLE, TRAIN, dict(PYTHON="/opt/py"))) == (argv, workers)


def test_single_node_options_and_their_environment_variables_agree():
    by_options = dry_run(SINGLE, ["--devices", "4", "--master-port=9123", "--log-dir", "/tmp/logs x",
                                  "--cluster-time-out", "900"] + TRAIN)
    by_env = dry_run(SINGLE, TRAIN, dict(DEVICES="4", MASTER_PORT="9123", LOG_DIR="/tmp/logs x",
                                         CLUSTER_TIME_OUT="900"))
    assert by_options == by_env
    options, _ = msrun_options(msrun_plan(by_options)[0])
    assert options["--worker_num"] == options["--local_worker_num"] == "4"
    assert (options["--master_port"], options["--log_dir"], options["--cluster_time_out"]) == ("9123", "/tmp/logs x",
                                                                                              "900")
    # an option on the command line wins over its variable
    options, _ = msrun_options(msrun_plan(dry_run(SINGLE, ["--devices", "2"] + TRAIN, dict(DEVICES="4")))[0])
    assert options["--worker_num"] == "2"


def test_dry_run_variable_prints_instead_of_running(tmp_path):
    record = tmp_path / "argv.json"
    proc = run_script(SINGLE, TRAIN, dict(DRY_RUN="1", MSRUN=fake_msrun(tmp_path, record)))
    assert proc.returncode == 0 and proc.stdout.startswith(os.path.join(str(tmp_path), "msrun") + " --worker_num=8")
    assert not record.exists()
    script, out = fake_training(tmp_path)
    proc = run_script(RANKTABLE, ["--rank-table", rank_table(tmp_path / "hccl.json", 1, 2), "--devices", "2",
                                  "--log-dir", str(tmp_path / "logs"), script, str(out)], dict(DRY_RUN="yes"))
    assert proc.returncode == 0 and len(ranktable_plan(proc.stdout.splitlines())) == 2
    assert not os.listdir(out) and not (tmp_path / "logs").exists()


def test_the_training_commands_own_options_are_passed_through():
    """Everything from the training command on is its own, even options the script also has."""
    _, command = msrun_options(msrun_plan(dry_run(SINGLE, ["tools/train_modify.py", "--devices", "3", "--dry-run"]))[0])
    assert command == ["tools/train_modify.py", "--devices", "3", "--dry-run"]
    _, command = msrun_options(msrun_plan(dry_run(SINGLE, ["--", "tools/stylize.py", "--mode", "offline"]))[0])
    assert command == ["tools/stylize.py", "--mode", "offline"]


def fake_msrun(tmp_path, record):
    """A stand-in msrun that writes the arguments it was given to ``record``."""
    path = tmp_path / "msrun"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("script, args", [
    (SINGLE, ["--devices", "8"]),
    (MULTI, ["--nodes", "2", "--node-rank", "1", "--devices", "4", "--master-addr", "10.0.0.1"])])
def test_msrun_gets_exactly_the_printed_command(tmp_path, script, args):
    record = tmp_path / "argv.json"
    env = dict(MSRUN=fake_msrun(tmp_path, record))
    printed = shlex.split(dry_run(script, args + TRAIN, env)[0])
    proc = run_script(script, args + TRAIN, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(record.read_text()) == printed[1:]


# ----------------------------------------------------------------- msrun, several nodes
def test_multi_node_ranks_cover_the_world_once():
    ranks = []
    for node in (0, 1):
        argv, workers = msrun_plan(dry_run(MULTI, ["--nodes", "2", "--node-rank", str(node), "--devices", "4",
                                                   "--master-addr", "10.0.0.1", "--master-port", "9000"] + TRAIN))
        options, command = msrun_options(argv)
        assert options == {"--worker_num": "8", "--local_worker_num": "4", "--master_addr": "10.0.0.1",
                           "--master_port": "9000", "--node_rank": str(node), "--log_dir": "runs/msrun_logs",
                           "--join": "True"}
        assert command == TRAIN
        assert [w["DEVICE_ID"] for w in workers] == ["0", "1", "2", "3"]
        assert {(w["MS_SCHED_HOST"], w["MS_SCHED_PORT"], w["MS_WORKER_NUM"]) for w in workers} == {
            ("10.0.0.1", "9000", "8")}
        ranks += [int(w["RANK_ID"]) for w in workers]
    assert ranks == list(range(8))  # node 0: 0-3, node 1: 4-7


def test_multi_node_from_environment_variables():
    env = dict(NODES="2", NODE_RANK="1", DEVICES="4", MASTER_ADDR="node0.cluster", MASTER_PORT="9000")
    argv, workers = msrun_plan(dry_run(MULTI, TRAIN, env))
    options, _ = msrun_options(argv)
    assert (options["--worker_num"], options["--node_rank"], options["--master_addr"]) == ("8", "1", "node0.cluster")
    assert [w["RANK_ID"] for w in workers] == ["4", "5", "6", "7"]


# ----------------------------------------------------------------- rank table
@pytest.mark.parametrize("nodes, devices", [(1, 8), (2, 4)])
def test_rank_table_processes(tmp_path, nodes, devices):
    table = rank_table(tmp_path / "hccl.json", nodes, devices)
    seen = []
    for node in range(nodes):
        plan = ranktable_plan(dry_run(RANKTABLE, ["--rank-table", table, "--nodes", str(nodes), "--node-rank",
                                                  str(node), "--devices", str(devices)] + TRAIN))
        assert len(plan) == devices
        for i, (env, command, log) in enumerate(plan):
            rank = node * devices + i
            assert env == {"RANK_TABLE_FILE": table, "RANK_SIZE": str(nodes * devices), "RANK_ID": str(rank),
                           "DEVICE_ID": str(i)}
            assert command == ["python"] + TRAIN
            assert log == f"runs/rank_logs/rank_{rank}.log"
            seen.append(rank)
    assert seen == list(range(nodes * devices))


def test_rank_table_from_environment_variables_and_a_relative_path(tmp_path):
    rank_table(tmp_path / "hccl.json", 1, 4)
    env = dict(RANK_TABLE_FILE=os.path.relpath(tmp_path / "hccl.json", REPO), DEVICES="4", FIRST_DEVICE="0",
               LOG_DIR="/tmp/rank logs")
    plan = ranktable_plan(dry_run(RANKTABLE, TRAIN, env))
    assert [p[0]["RANK_ID"] for p in plan] == ["0", "1", "2", "3"]
    assert {p[0]["RANK_TABLE_FILE"] for p in plan} == {str(tmp_path / "hccl.json")}  # made absolute
    assert plan[3][2] == "/tmp/rank logs/rank_3.log"


FAKE_TRAIN = """import json, os, sys, time
out = sys.argv[1]
rank = os.environ["RANK_ID"]
with open(os.path.join(out, f"rank_{rank}.json"), "w") as fh:
    json.dump({"argv": sys.argv[1:], "pid": os.getpid(),
               "env": {k: os.environ[k] for k in ("RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID", "DEVICE_ID")}}, fh)
print("training as rank", rank)
if rank == os.environ.get("FAIL_RANK"):
    sys.exit(3)
time.sleep(float(os.environ.get("SLEEP", "0")))
"""


def fake_training(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    out = tmp_path / "out"
    out.mkdir()
    return str(script), out


def test_rank_table_runs_the_printed_processes(tmp_path):
    table = rank_table(tmp_path / "hccl.json", 1, 4)
    script, out = fake_training(tmp_path)
    args = ["--rank-table", table, "--devices", "4", "--log-dir", str(tmp_path / "logs"), script, str(out),
            "with space", "it's"]
    env = dict(PYTHON=sys.executable)
    plan = ranktable_plan(dry_run(RANKTABLE, args, env))
    proc = run_script(RANKTABLE, args, env)
    assert proc.returncode == 0, proc.stderr
    for env_printed, command, log in plan:
        record = json.loads((out / f"rank_{env_printed['RANK_ID']}.json").read_text())
        assert record["env"] == env_printed
        assert record["argv"] == command[2:]  # [python, script, argv...]
        assert open(log).read().strip() == f"training as rank {env_printed['RANK_ID']}"


def test_rank_table_stops_the_others_when_one_fails(tmp_path):
    table = rank_table(tmp_path / "hccl.json", 1, 4)
    script, out = fake_training(tmp_path)
    proc = run_script(RANKTABLE, ["--rank-table", table, "--devices", "4", "--log-dir", str(tmp_path / "logs"),
                                  script, str(out)], dict(PYTHON=sys.executable, FAIL_RANK="2", SLEEP="120"),
                      timeout=60)  # (the hang guard: the others sleep 120 s unless stopped)
    assert proc.returncode == 1
    assert "rank 2 failed (exit 3)" in proc.stderr and "rank_2.log" in proc.stderr
    pids = [json.loads((out / f"rank_{r}.json").read_text())["pid"] for r in range(4)]
    for pid in pids:  # every process it started has ended
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


# ----------------------------------------------------------------- bad arguments
BAD = [
    (SINGLE, ["--devices", "0"] + TRAIN, "--devices"),
    (SINGLE, ["--devices", "eight"] + TRAIN, "whole number"),
    (SINGLE, ["--master-port", "80"] + TRAIN, "--master-port"),
    (SINGLE, ["--master-port", "70000"] + TRAIN, "--master-port"),
    (SINGLE, ["--bogus"] + TRAIN, "unknown option '--bogus'"),
    (SINGLE, ["--devices"], "needs a value"),
    (SINGLE, [], "no training command"),
    (SINGLE, ["tools/no_such_tool.py"], "not found"),
    (MULTI, ["--node-rank", "0", "--master-addr", "10.0.0.1"] + TRAIN, "--nodes"),
    (MULTI, ["--nodes", "2", "--master-addr", "10.0.0.1"] + TRAIN, "--node-rank"),
    (MULTI, ["--nodes", "2", "--node-rank", "2", "--master-addr", "10.0.0.1"] + TRAIN, "--node-rank"),
    (MULTI, ["--nodes", "2", "--node-rank", "1"] + TRAIN, "--master-addr"),
    (MULTI, ["--nodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1"] + TRAIN, "loopback"),
    (RANKTABLE, TRAIN, "--rank-table"),
    (RANKTABLE, ["--rank-table", "no_such_table.json"] + TRAIN, "not found"),
]


@pytest.mark.parametrize("script, args, says", BAD + [(SINGLE, TRAIN, "DRY_RUN")])
def test_bad_arguments_give_one_line(script, args, says):
    proc = run_script(script, args, dict(DRY_RUN="maybe") if says == "DRY_RUN" else None)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: ") and says in lines[0], proc.stderr


@pytest.mark.parametrize("tables, args, says", [
    ((1, 4), ["--devices", "8"], "lists 4 devices, but nodes x devices = 8"),
    ((2, 4), ["--devices", "4"], "lists 8 devices, but nodes x devices = 4"),  # --nodes 2 forgotten
    ((1, 4), ["--devices", "4", "--first-device", "1"], "as device 0"),
    (None, ["--devices", "4"], "not readable as JSON"),
])
def test_a_rank_table_that_does_not_fit_is_refused(tmp_path, tables, args, says):
    path = tmp_path / "hccl.json"
    if tables:
        rank_table(path, *tables)
    else:
        path.write_text("{not json")
    proc = run_script(RANKTABLE, ["--dry-run", "--rank-table", str(path)] + args + TRAIN)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{RANKTABLE}: error: ") and says in lines[0], proc.stderr


# ----------------------------------------------------------------- help, lint
@pytest.mark.parametrize("script, options", [
    (SINGLE, ["--devices", "DEVICES", "--master-port", "MASTER_PORT", "--log-dir", "LOG_DIR", "--dry-run",
              "DRY_RUN"]),
    (MULTI, ["--nodes", "NODES", "--node-rank", "NODE_RANK", "--master-addr", "MASTER_ADDR", "--master-port",
             "MASTER_PORT", "--devices", "DEVICES", "--dry-run", "DRY_RUN", "once on every node"]),
    (RANKTABLE, ["--rank-table", "RANK_TABLE_FILE", "--devices", "DEVICES", "--nodes", "NODES", "--node-rank",
                 "NODE_RANK", "--dry-run", "DRY_RUN"])])
def test_help(script, options):
    assert os.access(os.path.join(CLUSTER, script), os.X_OK)  # run as tools/cluster/<script>
    proc = run_script(script, ["-h"])
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {script}")
    missing = [o for o in options if o not in proc.stdout.replace("\n", " ").replace("ONCE ON EVERY NODE",
                                                                                    "once on every node")]
    assert not missing


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    scripts = sorted(os.path.join("tools", "cluster", f) for f in os.listdir(CLUSTER) if f.endswith(".sh"))
    proc = subprocess.run(["shellcheck", "-x"] + scripts, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
