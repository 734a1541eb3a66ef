from __future__ import annotations

import pytest

from tests.server import samples
from tests.server.samples import AUTH, TOKEN


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mapper.sqlite3"


@pytest.fixture
def settings(store_url) -> dict:
    # Service names, task definitions and container instances are learnt from AWS in the background;
    # tests/upstream covers them.
    return {
        "store": store_url,
        "token": TOKEN,
        "service_names": False,
        "task_definitions": False,
        "container_instances": False,
    }


@pytest.fixture
def app(make_app, settings):
    return make_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def report(client):
    """POST a map report with the right token; assert it was accepted."""

    def send(*containers: dict, **kwargs):
        response = client.post("/report/map", json=samples.map_report(*containers, **kwargs), headers=AUTH)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return send
