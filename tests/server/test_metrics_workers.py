from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.server import samples
from tests.server.samples import AUTH, TOKEN
from tests.support import ServerProcess

pytestmark = pytest.mark.slow

ROUTE = "/health"


def served_by_worker(metrics_dir) -> dict[str, float]:
    """``/health`` requests each worker's own counter file holds, by file name (one per worker pid)."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        total = 0.0
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "ecs_id_mapper_requests_total" and labels.get("route") == ROUTE:
                total += value
        counts[path.name] = total
    return counts


def scraped_total(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ecs_id_mapper_requests_total" and sample.labels["route"] == ROUTE
    )


def test_metrics_sum_the_requests_of_every_worker(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "ECS_ID_MAPPER_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with ServerProcess(env, tmp_path / "server.log") as server:
        assert not (metrics_dir / "counter_999999.db").exists()

        def get(_: int) -> int:
            # A new connection each time, so either worker may take it.
            return requests.get(f"{server.url}{ROUTE}", headers={"Connection": "close"}, timeout=5).status_code

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while sum(1 for n in served_by_worker(metrics_dir).values() if n) < 2 and sent < 4000:
                assert set(pool.map(get, range(40))) == {200}
                sent += 40
        per_worker = served_by_worker(metrics_dir)
        assert sum(1 for n in per_worker.values() if n) == 2, per_worker
        scraped = scraped_total(server.url)
        assert scraped == sum(per_worker.values())
        assert scraped == sent + 1  # and the one /health that told ServerProcess the server was up


def test_every_worker_serves_the_same_count_of_containers_on_record(tmp_path):
    env = {
        "ECS_ID_MAPPER_STORE": f"sqlite:///{tmp_path}/mapper.sqlite3",
        "ECS_ID_MAPPER_WORKERS": "2",
        "ECS_ID_MAPPER_TOKEN": TOKEN,
    }
    containers = [
        samples.container(f"{n:064x}", name=f"c{n}", task_arn=f"{samples.ARN_LONG[:-32]}{n // 2:032x}")
        for n in range(1, 6)
    ]
    with ServerProcess(env, tmp_path / "server.log") as server:
        answer = requests.post(
            f"{server.url}/report/map", json=samples.map_report(*containers), headers=AUTH, timeout=5
        )
        assert answer.status_code == 200, answer.text

        def gauge(_: int) -> float | None:
            # A new connection each time, so either worker may take it; neither has been scraped before.
            text = requests.get(f"{server.url}/metrics", headers={"Connection": "close"}, timeout=5).text
            found = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "ecs_id_mapper_containers_on_record"
            ]
            return found[0] if len(found) == 1 else None

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(gauge, range(40))) == {5.0}  # not 5 per worker, nor one worker's share
