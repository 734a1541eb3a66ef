"""checkov over deploy/ and both Dockerfiles: no finding, bar the ones skipped inline with a reason.

checkov pins older boto3 and botocore than the project does, so it runs from its own venv (``.venv-checkov``, which
``make test`` builds from requirements-checkov.txt). It is told to download nothing: it scans offline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DOCKERFILES = [ROOT / "Dockerfile.server", ROOT / "Dockerfile.agent"]

if not CHECKOV.exists():
    # CI builds it through `make test`; there a missing checkov is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHECKOV} is missing: `make test` builds it from requirements-checkov.txt")
    pytest.skip("checkov's venv is not built: make .venv-checkov/.installed", allow_module_level=True)


def scanned() -> list[Path]:
    return sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file()) + DOCKERFILES


def checkov(*paths: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """checkov's exit code and its JSON reports by framework (``cloudformation``, ``dockerfile``)."""
    arguments = [arg for path in paths for arg in ("-f", str(path))]
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_API_KEY": ""}
    result = subprocess.run(
        [CHECKOV, "--skip-download", "--compact", "--output", "json", *arguments],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return result.returncode, {report["check_type"]: report for report in reports}


def findings(report: dict[str, Any]) -> list[str]:
    return [
        f"{check['check_id']} {check['resource']} ({check['file_path']}:{check['file_line_range']})"
        for check in report["results"]["failed_checks"]
    ]


@pytest.fixture(scope="module")
def project() -> tuple[int, dict[str, dict[str, Any]]]:
    """checkov over the project's own files, once for the tests below."""
    return checkov(*scanned())


def test_the_stack_and_both_dockerfiles_pass_every_check(project):
    code, reports = project
    assert set(reports) == {"cloudformation", "dockerfile"}, reports.keys()
    for framework, report in reports.items():
        assert report["summary"]["parsing_errors"] == 0, framework
        assert report["summary"]["failed"] == 0, findings(report)
        assert report["summary"]["passed"] > 0, framework
    # Both Dockerfiles and every resource of the stack were read: a file checkov cannot parse is no pass.
    assert reports["dockerfile"]["summary"]["resource_count"] == len(DOCKERFILES)
    assert code == 0


def test_every_skip_gives_a_reason(project):
    _, reports = project
    skipped = [check for report in reports.values() for check in report["results"]["skipped_checks"]]
    assert skipped  # the stack's and the agent's, below: each says why
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 4, f"{check['check_id']} on {check['resource']} skipped without a reason"


def test_checkov_fails_on_a_finding(tmp_path):
    template = (ROOT / "deploy" / "cloudformation.yaml").read_text()
    # The stack's HTTPS listener with a policy that still allows TLS 1.0.
    weakened = tmp_path / "cloudformation.yaml"
    weakened.write_text(template.replace("ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-2016-08"))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm-slim\nRUN apt-get update\n")
    code, reports = checkov(weakened, dockerfile)
    assert code != 0
    assert "CKV_AWS_103" in {check.split()[0] for check in findings(reports["cloudformation"])}
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= {check.split()[0] for check in findings(reports["dockerfile"])}
