"""An S3-compatible server on loopback: moto's server mode in a subprocess, driven through boto3.

A subprocess (not a thread) so that an outage is real: `stop()` kills it and clients get connection
refused; `start()` brings it back on the same port (moto keeps its data in memory, so the bucket is
created again and objects written before the outage are gone); `pause()`/`resume()` freeze it with
SIGSTOP/SIGCONT instead, so requests hang until the client's timeout and the data survives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from tools.stack.processes import ProcessRecord, log_tail, start_process, stop_group

# The responses bucket as the manifests name it: {project}-responses-{account}; moto's account id is 12 zeros.
RESPONSES_BUCKET = "eks-llm-inference-responses-000000000000"
REGION = "us-east-1"
ACCESS_KEY_ID = "stack-local"
SECRET_ACCESS_KEY = "stack-local-secret"


class S3StartError(RuntimeError):
    """The S3 server did not start; the message carries its log's tail."""


@dataclass
class S3Server:
    """moto's S3 server on 127.0.0.1:`port` with `buckets` created."""

    port: int
    log_path: Path
    buckets: tuple[str, ...] = (RESPONSES_BUCKET,)
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    record: ProcessRecord | None = None
    paused: bool = False
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bucket(self) -> str:
        """The responses bucket (the first of `buckets`)."""
        return self.buckets[0]

    @property
    def pid(self) -> int | None:
        return self.record.pid if self.record else None

    @property
    def running(self) -> bool:
        return self.record is not None and self.record.is_alive()

    def env(self) -> dict[str, str]:
        """AWS variables that point boto3/botocore clients at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self, *, timeout: float = 5.0, retries: int = 0) -> Any:
        """A boto3 S3 client for this server (no retries by default, so outages show at once)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": retries + 1, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the server on `port` and create the buckets (again, after a stop)."""
        if self.running:
            raise S3StartError(f"the S3 server is already running (pid {self.pid})")
        # Another server on the port would answer the health check below for a process that then
        # exits with "Address already in use"
        self._wait_until_nothing_listens(timeout)
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = dict(os.environ)
        env.pop("AWS_ENDPOINT_URL_S3", None)
        self.popen, self.record = start_process("s3", command, log_path=self.log_path, env=env)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.popen.poll() is not None:
                raise S3StartError(
                    f"the S3 server exited with code {self.popen.returncode}; {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise S3StartError(f"the S3 server did not answer within {timeout:g} s")
            time.sleep(0.1)
        client = self.client()
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
        for bucket in self.buckets:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        """Kill the server (an outage: connection refused on the port)."""
        if self.record is not None:
            if self.paused:
                self.resume()
            stop_group(self.record, grace=5.0, popen=self.popen)
        self._wait_until_nothing_listens(10.0)

    def _wait_until_nothing_listens(self, timeout: float) -> None:
        """Until a connection to the port is refused; S3StartError after `timeout` s (an outage that is
        none). A connection, not a bind: the closed connections' TIME_WAIT keeps a bind failing."""
        deadline = time.monotonic() + timeout
        while self._accepts_connections():
            if time.monotonic() > deadline:
                raise S3StartError(
                    f"port {self.port} is still taken {timeout:g} s after the S3 server should have "
                    f"stopped: another process listens there"
                )
            time.sleep(0.1)

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        if self.record is None or not self.running:
            raise S3StartError("the S3 server is not running")
        os.killpg(self.record.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.record is not None and self.paused:
            os.killpg(self.record.pid, signal.SIGCONT)
        self.paused = False

    def _accepts_connections(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _answers(self) -> bool:
        try:
            httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True


def start_s3(port: int, *, log_path: Path, buckets: tuple[str, ...] = (RESPONSES_BUCKET,)) -> S3Server:
    server = S3Server(port=port, log_path=log_path, buckets=buckets)
    server.start()
    return server
