"""S3 (moto's server) outages and Prometheus scraping the real vLLM."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from tools.stack.prometheus import PrometheusError, PrometheusServer
from tools.stack.s3 import RESPONSES_BUCKET, S3Server, S3StartError
from tools.stack.vllm import VllmServer
from tools.stack.wait import WaitTimeoutError, wait_until


@pytest.mark.s3
def test_s3_has_the_responses_bucket_and_round_trips_objects(s3_server: S3Server) -> None:
    client = s3_server.client()
    key = f"tests/{uuid.uuid4()}.json"
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b'{"rating": 5}')

    assert s3_server.bucket == RESPONSES_BUCKET
    assert client.get_object(Bucket=RESPONSES_BUCKET, Key=key)["Body"].read() == b'{"rating": 5}'


@pytest.mark.s3
def test_s3_stop_is_an_outage_and_start_brings_the_bucket_back(s3_fault: S3Server) -> None:
    client = s3_fault.client(timeout=2)
    port, pid = s3_fault.port, s3_fault.pid
    client.put_object(Bucket=s3_fault.bucket, Key="before-outage", Body=b"x")

    s3_fault.stop()
    assert not s3_fault.running
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.list_objects_v2(Bucket=s3_fault.bucket)

    s3_fault.start()
    assert (s3_fault.port, s3_fault.running) == (port, True)
    assert s3_fault.pid != pid
    listing = client.list_objects_v2(Bucket=s3_fault.bucket)
    assert listing["KeyCount"] == 0  # moto keeps objects in memory: the outage lost them
    client.put_object(Bucket=s3_fault.bucket, Key="after-outage", Body=b"y")
    assert client.get_object(Bucket=s3_fault.bucket, Key="after-outage")["Body"].read() == b"y"


@pytest.mark.s3
def test_s3_pause_makes_requests_time_out_and_keeps_data(s3_fault: S3Server) -> None:
    key = f"tests/{uuid.uuid4()}"
    s3_fault.client().put_object(Bucket=s3_fault.bucket, Key=key, Body=b"kept")

    s3_fault.pause()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        s3_fault.client(timeout=1).get_object(Bucket=s3_fault.bucket, Key=key)
    s3_fault.resume()

    assert s3_fault.client().get_object(Bucket=s3_fault.bucket, Key=key)["Body"].read() == b"kept"


def test_an_outage_with_another_server_on_the_port_is_an_error(tmp_path: Path) -> None:
    """Neither a stop nor a start may pass while something else answers on the S3 port."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        server = S3Server(port=other.getsockname()[1], log_path=tmp_path / "s3.log")
        with pytest.raises(S3StartError, match=f"port {server.port} is still taken"):
            server.stop()
        with pytest.raises(S3StartError, match=f"port {server.port} is still taken"):
            server.start(timeout=0.5)
        assert server.record is None  # nothing was started


@pytest.mark.vllm
def test_prometheus_scrapes_vllm_queue_gauges(
    prometheus_server: PrometheusServer, vllm_server: VllmServer
) -> None:
    expr = f'vllm:num_requests_running{{model_name="{vllm_server.model}"}}'
    samples = wait_until(
        lambda: prometheus_server.query_vector(expr), timeout=30, what=f"a sample of {expr} in Prometheus"
    )

    assert [(labels["job"], value) for labels, value in samples] == [("vllm", 0.0)]
    assert prometheus_server.query(f'vllm:num_requests_waiting{{model_name="{vllm_server.model}"}}') == 0.0
    assert prometheus_server.targets_up() == {"vllm": True}


@pytest.mark.vllm
def test_prometheus_query_errors_are_clear(prometheus_server: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="returned 0 samples, expected 1"):
        prometheus_server.query("no_such_metric_anywhere")
    with pytest.raises(PrometheusError, match=r"failed: .*parse error"):
        prometheus_server.query("sum(")


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeoutError, match=r"waiting for the answer \(last value: 0\)"):
        wait_until(lambda: 0, timeout=0.3, interval=0.1, what="the answer")
    assert wait_until(lambda: 42, timeout=1) == 42
