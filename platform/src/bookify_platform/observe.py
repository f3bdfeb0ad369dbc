"""A local Prometheus (Debian's `prometheus` package) scraping the services `bookify up` runs.

Its configuration is generated from observability/prometheus/prometheus.local.yml, keeping
the jobs that exist on this machine (the collector and kafka-exporter run under compose
only; scraping them here would only make the service-down alert fire) and pointing them
at the ports actually in use. Rules are the very files CI tests with promtool.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from bookify_platform.infra import paths
from bookify_platform.infra.errors import MissingPrerequisiteError, StartupError
from bookify_platform.infra.fsutil import tail
from bookify_platform.infra.process import ensure_port_free, spawn, terminate

LOCAL_JOBS = ("gateway", "booking", "consumer", "locust", "prometheus")
DEFAULT_PORT = 9090
LOCUST_EXPORTER_PORT = 9646


def prometheus_config(
    ports: Mapping[str, int | Sequence[int]],
    *,
    port: int,
    locust_port: int = LOCUST_EXPORTER_PORT,
    interval: str | None = None,
    rules_dir: Path | None = None,
) -> dict[str, Any]:
    """The local scrape config: only jobs that run here, on the ports they listen on.

    ``interval`` (e.g. "1s") overrides the scrape interval and every rule group's
    evaluation interval, for tests that cannot wait for the production cadence; the
    rewritten rule files go to ``rules_dir``.
    """
    source = paths.repo_root() / "observability" / "prometheus"
    config: dict[str, Any] = yaml.safe_load((source / "prometheus.local.yml").read_text())
    rule_files = [source / f for f in config.get("rule_files", [])]
    if interval is not None:
        if rules_dir is None:
            raise ValueError("an interval override needs a rules_dir for the rewritten rules")
        config["global"].update(
            scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
        )
        rules_dir.mkdir(parents=True, exist_ok=True)
        rewritten = []
        for path in rule_files:
            rules = yaml.safe_load(path.read_text())
            for group in rules["groups"]:
                group["interval"] = interval
            rewritten.append(rules_dir / path.name)
            rewritten[-1].write_text(yaml.safe_dump(rules, sort_keys=False))
        rule_files = rewritten
    targets = {**ports, "locust": locust_port, "prometheus": port}

    def addresses(job: str) -> list[str]:
        # A service with replicas is one job with a target per replica (`bookify up --replicas`).
        found = targets[job]
        return [f"127.0.0.1:{p}" for p in ([found] if isinstance(found, int) else found)]

    config["rule_files"] = [str(f) for f in rule_files]
    config["scrape_configs"] = [
        {**job, "static_configs": [{"targets": addresses(job["job_name"])}]}
        for job in config["scrape_configs"]
        if job["job_name"] in LOCAL_JOBS
    ]
    return config


class LocalPrometheus:
    def __init__(
        self,
        run_dir: Path,
        ports: Mapping[str, int | Sequence[int]],
        *,
        port: int = DEFAULT_PORT,
        locust_port: int = LOCUST_EXPORTER_PORT,
        interval: str | None = None,
    ) -> None:
        self.run_dir = run_dir / "prometheus"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config = prometheus_config(
            ports,
            port=port,
            locust_port=locust_port,
            interval=interval,
            rules_dir=self.run_dir / "rules",
        )
        self.log_path = self.run_dir / "prometheus.log"
        self._proc: Any = None

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise MissingPrerequisiteError(
                "prometheus is not installed: run `make tools` (or apt-get install prometheus)"
            )
        ensure_port_free(self.port, flag="--prometheus-port", env="BOOKIFY_PROMETHEUS_PORT")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._proc = spawn(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.run_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
                "--web.enable-lifecycle",
            ],
            log_path=self.log_path,
            attached=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StartupError(
                    f"prometheus did not become ready. Last lines of {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            terminate(self._proc.pid, timeout=10, popen=self._proc)
