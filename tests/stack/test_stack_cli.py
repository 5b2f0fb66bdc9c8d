"""`stack up | down | status` end to end, and the bad states it must report clearly."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tools.stack import cli
from tools.stack.cli import EXIT_BAD_STATE, EXIT_FAILED, EXIT_OK, main
from tools.stack.env import REPO_ROOT
from tools.stack.processes import (
    ProcessRecord,
    describe_group,
    free_port,
    group_members,
    port_is_free,
    start_process,
    stop_group,
)
from tools.stack.prometheus import PrometheusApi
from tools.stack.s3 import RESPONSES_BUCKET
from tools.stack.vllm import VllmStartError, local_serving_args, start_vllm
from tools.stack.wait import wait_until


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ProcessRecord]:
    """A harmless process in its own group, standing in for a recorded service."""
    popen, record = start_process("sleeper", ["sleep", "300"], log_path=tmp_path / "sleeper.log")
    try:
        yield record
    finally:
        stop_group(record, grace=2, popen=popen)


def write_state(state_dir: Path, records: dict[str, ProcessRecord]) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    services = {
        name: {"url": f"http://127.0.0.1:{free_port()}", "process": record.to_json(), "log": record.log_path}
        for name, record in records.items()
    }
    path = state_dir / "state.json"
    path.write_text(json.dumps({"version": 1, "started_at": 0.0, "services": services}))
    return path


# Timing against the real CPU vLLM on a shared 2-core machine (start-up, scheduling, ephemeral
# ports): a rerun tells a slow moment from a broken behaviour, which fails every attempt.
@pytest.mark.flaky(reruns=2)
@pytest.mark.vllm
@pytest.mark.timeout(900)  # starts a vLLM of its own (up to START_TIMEOUT on a busy machine)
def test_up_status_down_leaves_no_process_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = tmp_path / "stack"
    ports = ["--vllm-port", "0", "--s3-port", "0", "--prometheus-port", "0", "--gateway-port", "0"]

    assert main(["--state-dir", str(state_dir), "up", *ports]) == EXIT_OK
    up_output = capsys.readouterr().out
    state = json.loads((state_dir / "state.json").read_text())
    services = state["services"]
    pids = {name: service["process"]["pid"] for name, service in services.items()}
    try:
        assert set(services) == {"gateway", "vllm", "s3", "prometheus"}
        assert all(psutil.pid_exists(pid) for pid in pids.values())
        for service in services.values():
            assert service["url"] in up_output
        model = services["vllm"]["model"]
        models = httpx.get(f"{services['vllm']['url']}/v1/models", timeout=5).json()["data"]
        assert [served["id"] for served in models] == [model]
        assert services["s3"]["bucket"] == RESPONSES_BUCKET
        # The gateway is wired to this vLLM and this S3: ready, and it proxies a real completion.
        gateway = services["gateway"]["url"]
        status = httpx.get(f"{gateway}/status", timeout=10).json()
        assert (status["status"], status["upstream"]["ready_replicas"], status["s3"]) == (
            "ok", 1, {"ok": True, "error": None})
        chat = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        completion = httpx.post(f"{gateway}/v1/chat/completions", json=chat, timeout=60)
        assert completion.status_code == 200
        assert completion.json()["usage"]["completion_tokens"] == 4
        prometheus = PrometheusApi(services["prometheus"]["url"])
        wait_until(
            lambda: prometheus.targets_up() == {"gateway": True, "vllm": True},
            timeout=30,
            what="Prometheus scraping the gateway and vLLM",
        )
        # The repository's recording rules run there, and the gateway's scaling view reads it.
        wait_until(
            lambda: prometheus.query_vector("llm:vllm_requests_waiting:sum") != [],
            timeout=30,
            what="the recording rule llm:vllm_requests_waiting:sum",
        )
        token = services["gateway"]["admin_token"]
        view = httpx.get(f"{gateway}/api/admin/scaling", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).json()
        assert (view["prometheus_url"], view["reachable"]) == (services["prometheus"]["url"], True)
        assert view["queue"] == {"waiting": 0, "running": 0}

        assert main(["--state-dir", str(state_dir), "status"]) == EXIT_OK
        assert main(["--state-dir", str(state_dir), "up", *ports]) == EXIT_BAD_STATE
        assert "the stack is already up" in capsys.readouterr().err
    finally:
        assert main(["--state-dir", str(state_dir), "down"]) == EXIT_OK

    down_output = capsys.readouterr().out
    for name, pid in pids.items():
        assert f"stopped {name} (pid {pid})" in down_output
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert [member.pid for pid in pids.values() for member in group_members(pid)] == []
    assert not (state_dir / "state.json").exists()
    assert main(["--state-dir", str(state_dir), "status"]) == EXIT_FAILED
    assert main(["--state-dir", str(state_dir), "down"]) == EXIT_OK
    assert "nothing to stop" in capsys.readouterr().out


def test_busy_port_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(
            ["--state-dir", str(tmp_path), "up", "--vllm-url", "http://127.0.0.1:9", "--s3-port", str(port)]
        )

    assert code == EXIT_BAD_STATE
    assert f"port {port} for S3 is already in use" in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()


def test_missing_vllm_environment_names_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VLLM_PYTHON", str(tmp_path / "no-such-python"))

    assert main(["--state-dir", str(tmp_path), "up", "--s3-port", "0"]) == EXIT_BAD_STATE
    err = capsys.readouterr().err
    assert "no-such-python is not an executable" in err
    assert "scripts/setup --test" in err


def test_live_state_file_means_already_up(
    tmp_path: Path, sleeper: ProcessRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    write_state(tmp_path, {"s3": sleeper})

    assert main(["--state-dir", str(tmp_path), "up"]) == EXIT_BAD_STATE
    expected = f"the stack is already up (s3 running, state file {tmp_path / 'state.json'})"
    assert expected in capsys.readouterr().err
    assert sleeper.is_alive()


def test_status_and_down_with_a_stale_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    gone = ProcessRecord("vllm", finished.pid, 1.0, ("true",), str(tmp_path / "vllm.log"))
    write_state(tmp_path, {"vllm": gone})

    assert main(["--state-dir", str(tmp_path), "status"]) == EXIT_FAILED
    assert "NOT RUNNING" in capsys.readouterr().out
    assert main(["--state-dir", str(tmp_path), "down"]) == EXIT_OK
    assert f"vllm (pid {finished.pid}) had already exited" in capsys.readouterr().out
    assert not (tmp_path / "state.json").exists()


def test_stale_state_is_removed_and_a_failed_start_stops_what_had_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    write_state(tmp_path, {"s3": ProcessRecord("s3", finished.pid, 1.0, ("true",), "x.log")})
    s3_port = free_port()

    code = main(
        ["--state-dir", str(tmp_path), "up", "--s3-port", str(s3_port), "--prometheus-port", "0",
         "--vllm-url", f"http://127.0.0.1:{free_port()}"]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "removing a stale state file" in err
    assert "no healthy vLLM at" in err and "nothing is left running" in err
    assert port_is_free(s3_port)  # the S3 server that had started was stopped again
    assert not (tmp_path / "state.json").exists()


def test_unreadable_state_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text("{not json")

    assert main(["--state-dir", str(tmp_path), "down"]) == EXIT_BAD_STATE
    assert "is not valid JSON" in capsys.readouterr().err


def test_a_reused_pid_is_never_signalled(sleeper: ProcessRecord) -> None:
    earlier = sleeper.started_after_boot - 100.0
    impostor = ProcessRecord("vllm", sleeper.pid, earlier, sleeper.command, sleeper.log_path)

    assert not impostor.is_alive()
    stop_group(impostor, grace=1)
    assert sleeper.is_alive()


def test_a_record_knows_its_process_by_its_start_after_boot(sleeper: ProcessRecord) -> None:
    """Not by the wall-clock start, which moves with the system clock (it jumped 14 s in one run)."""
    wall_clock_start = psutil.Process(sleeper.pid).create_time()

    assert sleeper.started_after_boot == pytest.approx(wall_clock_start - psutil.boot_time(), abs=0.01)
    assert sleeper.started_after_boot < time.clock_gettime(time.CLOCK_BOOTTIME)
    assert sleeper.to_json()["started_after_boot"] == sleeper.started_after_boot
    assert ProcessRecord.from_json(sleeper.to_json()).is_alive()


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_vllm_that_exits_while_starting_reports_its_log(vllm_python_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    args = local_serving_args(["--served-model-name", "broken"], model_dir=broken, port=free_port())

    with pytest.raises(VllmStartError, match=r"vLLM exited with code \d+ while starting; .*vllm\.log"):
        start_vllm(vllm_python_path, args, log_path=tmp_path / "vllm.log", max_num_seqs=4)


def silent_server_module(root: Path) -> Path:
    """A stand-in for vLLM's API server module that says which CPUs it may use and then never answers."""
    module = root / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    for package in (root / "vllm", root / "vllm" / "entrypoints", module):
        (package / "__init__.py").write_text("")
    (module / "api_server.py").write_text(
        "import os, time\nprint('cpus', sorted(os.sched_getaffinity(0)), flush=True)\ntime.sleep(300)\n"
    )
    return root


def test_a_server_that_never_answers_is_stopped_and_described(tmp_path: Path) -> None:
    modules = silent_server_module(tmp_path / "modules")
    args = local_serving_args(["--served-model-name", "silent"], model_dir=tmp_path, port=free_port())
    last_core = max(os.sched_getaffinity(0))

    with pytest.raises(VllmStartError) as raised:
        start_vllm(Path(sys.executable), args, log_path=tmp_path / "vllm.log", max_num_seqs=4, timeout=3,
                   environment={"PYTHONPATH": str(modules)}, cpus=frozenset({last_core}))

    message = str(raised.value)
    assert message.startswith("vLLM was not healthy after 3 s; its processes:\n")
    assert re.search(r"^pid \d+ python[\d.]*: sleeping, \d+\.\d s CPU, last on CPU \d+, waits in \w+$",
                     message, re.MULTILINE)
    assert f"cpus [{last_core}]" in message  # from the log's tail: the server ran on the CPUs it was given
    leader = int(re.search(r"^pid (\d+)", message, re.MULTILINE).group(1))
    assert not psutil.pid_exists(leader)


def test_a_group_with_no_live_process_is_described_as_such(tmp_path: Path) -> None:
    popen, record = start_process("brief", ["true"], log_path=tmp_path / "brief.log")
    popen.wait()

    assert describe_group(record.pid) == "(no live process)"


def test_module_entry_point_prints_usage_errors_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.stack", "sideways"], cwd=REPO_ROOT, capture_output=True, text=True
    )

    assert result.returncode == 2
    assert "invalid choice: 'sideways'" in result.stderr
    assert "Traceback" not in result.stderr


def test_overlay_flag_without_a_mapping_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = ["--served-model-name", "m", "--speculative-config", "{}"]
    monkeypatch.setattr(cli, "dev_overlay_args", lambda _root: (overlay, "a test overlay"))
    s3_port = free_port()

    reuse = ["--vllm-url", "http://127.0.0.1:9"]
    code = main(["--state-dir", str(tmp_path), "up", *reuse, "--s3-port", str(s3_port)])

    assert code == EXIT_BAD_STATE
    assert "--speculative-config has no local mapping" in capsys.readouterr().err
    assert port_is_free(s3_port)
    assert not (tmp_path / "state.json").exists()
