"""The flows layer without a server: the deployments in flows/prefect.yaml point at real flows with
parameters they accept and valid schedules; the retry policy retries transient storage errors only;
and the library itself never imports Prefect. (The flows run for real, through a Prefect server, in
tests/system/test_flows_prefect.py.)"""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    mp.setenv("DO_NOT_TRACK", "1")
    mp.syspath_prepend(str(ROOT))
    yield
    mp.undo()


def test_prefect_yaml_deployments_load_and_validate(prefect_home):
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "flows" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"yearly-rebuild", "monthly-update", "demo", "publish"} <= set(deployments)
    crons = {}
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        params = d.get("parameters", {})
        assert set(params) <= set(flow.parameters.properties), (name, params)
        assert d["work_pool"]["name"] == "carbonsink"
        for s in d.get("schedules", []):
            flow.to_deployment(name=name, cron=s["cron"], parameters=params)  # validates offline
            crons[name] = s["cron"]
    assert crons == {"yearly-rebuild": "0 2 1 1 *", "monthly-update": "0 3 1 * *"}
    # every run flow takes the study area like the CLI's --domain
    # and ends with the run's atlas when given a folder for it
    for entry in ("flows/demo.py:demo", "flows/compute.py:compute"):
        assert {"domain", "atlas"} <= set(
            load_flow_from_entrypoint(str(ROOT / entry)).parameters.properties)
    # the comparison of flux products is a flow too (a manifest, or the synthetic demo)
    params = load_flow_from_entrypoint(str(ROOT / "flows/compare.py:compare")).parameters
    assert {"manifest", "demo", "store", "prefix"} <= set(params.properties)
    assert deployments["yearly-rebuild"]["parameters"]["full_rebuild"] is True
    assert deployments["monthly-update"]["entrypoint"] == "flows/compute.py:compute"
    # no store credential ever goes into parameters (the Prefect API stores them)
    names = {k.lower() for d in deployments.values() for k in d.get("parameters", {})}
    assert not {k for k in names if "key" in k or "secret" in k or "token" in k}, names


def test_retry_condition_retries_transient_storage_errors_only(prefect_home):
    from botocore.exceptions import EndpointConnectionError
    from prefect.states import Completed, Failed

    from carbonsink.config import ConfigError
    from carbonsink.io.validate import InputError
    from flows._common import retry_transient
    from flows.tasks import TASK_DEFAULTS, product

    assert retry_transient(None, None, Failed(data=EndpointConnectionError(endpoint_url="x")))
    assert retry_transient(None, None, Failed(data=ConnectionResetError()))
    assert not retry_transient(None, None, Failed(data=InputError("pr", "src", "negative")))
    assert not retry_transient(None, None, Failed(data=ConfigError("bad")))
    assert not retry_transient(None, None, Completed(data=1))
    assert TASK_DEFAULTS["retries"] == 3 and TASK_DEFAULTS["retry_condition_fn"] is retry_transient
    assert product.retries == 3 and product.retry_condition_fn is retry_transient


def test_the_library_never_imports_prefect():
    hits = [str(p) for p in (ROOT / "carbonsink").rglob("*.py")
            if "import prefect" in p.read_text() or "from prefect" in p.read_text()]
    assert hits == []
    code = ("import sys, carbonsink.cli, carbonsink.pipeline, carbonsink.catalog, "
            "carbonsink.cluster; assert not [m for m in sys.modules if m.startswith('prefect')]")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
