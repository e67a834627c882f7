"""infra/: the Dockerfile, docker-compose and Kubernetes manifests, checked without Docker or a
cluster (neither exists on the development machine): they parse, name the services/kinds they must,
run the right commands, wire names consistently and never inline a secret."""
from __future__ import annotations

import math
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL)", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{12,}\b")


def _gib(q: str) -> float:
    """GiB of a memory quantity in Kubernetes, dask or docker compose ("g" = GiB) spelling."""
    units = {"Gi": 2**30, "GiB": 2**30, "g": 2**30, "Mi": 2**20, "MiB": 2**20, "m": 2**20,
             "G": 1e9, "GB": 1e9}
    m = re.fullmatch(r"([\d.]+)([A-Za-z]*)", q)
    return float(m.group(1)) * units[m.group(2)] / 2**30


# --- Dockerfile ---------------------------------------------------------------------------------
def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        full = (buf + line).strip()
        buf = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not buf, "dangling line continuation"
    return out


def test_dockerfile():
    ins = _instructions(INFRA / "Dockerfile")
    assert ins[0] == ("FROM", "python:3.11-slim")
    assert sum(1 for k, _ in ins if k == "FROM") == 1
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "ENTRYPOINT", "CMD", "ARG", "LABEL",
             "EXPOSE"}
    assert {k for k, _ in ins} <= known
    pip = [a for k, a in ins if k == "RUN" and "pip install" in a]
    assert len(pip) == 1
    assert '".[flows,geo]"' in pip[0] and "moto[server]" in pip[0]
    # the sources it copies exist (the build context is the repository root)
    for k, a in ins:
        if k == "COPY":
            *srcs, _dst = shlex.split(a)
            for src in srcs:
                assert (ROOT / src).exists(), f"COPY {src}: missing in the repository"
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [a for k, a in ins if k == "ENTRYPOINT"] and [a for k, a in ins if k == "CMD"]
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert "infra/.env" in ignore and ".git" in ignore


def test_dockerfile_extras_exist_in_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert "geo" in extras
    if "flows" not in extras:
        pytest.skip("the [flows] extra is added together with flows/ (issue 6)")


# --- docker compose -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _cmd(svc: dict) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _env(svc: dict) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def test_compose_services(compose):
    services = compose["services"]
    by_role = {
        "scheduler": [n for n, s in services.items() if _cmd(s)[:2] == ["dask", "scheduler"]],
        "worker": [n for n, s in services.items() if _cmd(s)[:2] == ["dask", "worker"]],
        "s3": [n for n, s in services.items() if _cmd(s)[:3] == ["python", "-m", "moto.server"]],
        "prefect-server": [n for n, s in services.items()
                           if _cmd(s)[:3] == ["prefect", "server", "start"]],
        "prefect-worker": [n for n, s in services.items()
                           if _cmd(s)[:3] == ["prefect", "worker", "start"]],
    }
    assert by_role == {"scheduler": ["dask-scheduler"],
                       "worker": ["dask-worker-1", "dask-worker-2"], "s3": ["s3"],
                       "prefect-server": ["prefect-server"], "prefect-worker": ["prefect-worker"]}
    for name, svc in services.items():
        assert svc["image"] == "carbonsink:latest", name
        assert (INFRA / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == \
            INFRA / "Dockerfile", name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if not src.startswith((".", "/")):
                assert src in compose["volumes"], f"named volume {src} not declared"
    # workers join the scheduler service; each has a memory limit below its container limit
    for name in by_role["worker"]:
        cmd = _cmd(services[name])
        assert cmd[2] == "tcp://dask-scheduler:8786"
        limit = _gib(cmd[cmd.index("--memory-limit") + 1])
        container = _gib(services[name]["deploy"]["resources"]["limits"]["memory"])
        assert limit < container
    pw = services["prefect-worker"]
    cmd = _cmd(pw)
    assert cmd[cmd.index("--type") + 1] == "process" and "--pool" in cmd
    assert _env(pw)["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert _env(pw)["CARBONSINK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    assert _cmd(services["s3"])[-1] == "5000"
    assert "service_healthy" in str(pw["depends_on"])


def test_compose_keeps_secrets_out(compose):
    for name, svc in compose["services"].items():
        for key, value in _env(svc).items():
            assert not SECRET_NAME.search(key), f"{name} inlines {key}; use env_file .env"
        text = yaml.safe_dump(svc)
        assert not AWS_KEY_ID.search(text)
        ef = svc.get("env_file", [])
        assert ef in ([], ".env", [".env"]), name
    # infra/.env is git-ignored; the template holds placeholders only
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, "infra/.env must be git-ignored"
    template = dict(line.split("=", 1) for line in (INFRA / ".env.example").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CARBONSINK_STORE"} <= set(template)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "placeholder" in template[key] and not AWS_KEY_ID.search(template[key])
    assert template["CARBONSINK_STORE"].startswith("s3://" + template["CARBONSINK_BUCKET"] + "/")


# --- Kubernetes -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
                docs[doc["kind"]] = doc
    return docs


def _containers(doc: dict) -> list[dict]:
    if doc["kind"] == "DaskCluster":
        return (doc["spec"]["worker"]["spec"]["containers"]
                + doc["spec"]["scheduler"]["spec"]["containers"])
    if doc["kind"] in ("Job", "Deployment"):
        return doc["spec"]["template"]["spec"]["containers"]
    return []


def test_k8s_kinds_and_api_versions(manifests):
    assert {k: d["apiVersion"] for k, d in manifests.items()} == {
        "Namespace": "v1", "Secret": "v1", "ConfigMap": "v1",
        "DaskCluster": "kubernetes.dask.org/v1", "Job": "batch/v1", "Deployment": "apps/v1"}
    for kind, doc in manifests.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == manifests["Namespace"]["metadata"]["name"]
    images = {c["image"] for d in manifests.values() for c in _containers(d)}
    assert len(images) == 1, images                 # workers and clients: the same versions


def test_daskcluster_sized_for_1km(manifests):
    dc = manifests["DaskCluster"]
    name = dc["metadata"]["name"]
    worker = dc["spec"]["worker"]["spec"]["containers"][0]
    scheduler = dc["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert dc["spec"]["worker"]["replicas"] >= 8
    args = worker["args"]
    nthreads = int(args[args.index("--nthreads") + 1])
    mem_limit = _gib(args[args.index("--memory-limit") + 1])
    res = worker["resources"]
    assert res["requests"]["memory"] == res["limits"]["memory"]
    assert mem_limit < _gib(res["limits"]["memory"])      # the nanny acts before the OOM killer
    assert int(res["requests"]["cpu"]) == nthreads
    assert mem_limit / nthreads >= 2                       # ≥ 2 GiB per thread (infra/README.md)
    svc = dc["spec"]["scheduler"]["service"]
    assert svc["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    assert {p["name"]: p["port"] for p in svc["ports"]} == {"tcp-comm": 8786,
                                                            "http-dashboard": 8787}
    assert {p["name"] for p in scheduler["ports"]} == {"tcp-comm", "http-dashboard"}
    # the address the clients use is the operator's Service <name>-scheduler
    cm = manifests["ConfigMap"]["data"]
    assert cm["CARBONSINK_SCHEDULER"].startswith(f"tcp://{name}-scheduler.")
    assert cm["CARBONSINK_SCHEDULER"].endswith(":8786")
    assert cm["CARBONSINK_STORE"].startswith("s3://")


def test_job_runs_the_1km_demo(manifests):
    job = manifests["Job"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[:2] == ["carbonsink", "demo"]
    assert args[args.index("--resolution") + 1] == "1km"
    assert args[args.index("--scheduler") + 1] == "$(CARBONSINK_SCHEDULER)"
    assert args[args.index("--store") + 1] == "$(CARBONSINK_STORE)"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # the CLI accepts these options
    from click.testing import CliRunner

    from carbonsink.cli import main
    help_text = CliRunner().invoke(main, ["demo", "--help"]).output
    for opt in (a for a in args[2:] if a.startswith("--")):
        assert opt in help_text, opt
    pw = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert pw["args"][:3] == ["prefect", "worker", "start"]
    assert pw["args"][pw["args"].index("--type") + 1] == "process"


def test_k8s_secrets_only_by_reference(manifests):
    secret = manifests["Secret"]
    assert "data" not in secret
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert set(secret["stringData"].values()) == {"REPLACE-ME"}
    for kind, doc in manifests.items():
        for c in _containers(doc):
            for e in c.get("env", []):
                assert not (SECRET_NAME.search(e["name"]) and "value" in e), \
                    f"{kind}/{c['name']} inlines {e['name']}"
            refs = {next(iter(r)): r[next(iter(r))]["name"] for r in c.get("envFrom", [])}
            if c["name"] == "scheduler":
                continue                    # the scheduler touches no storage
            assert refs == {"configMapRef": manifests["ConfigMap"]["metadata"]["name"],
                            "secretRef": secret["metadata"]["name"]}, (kind, c["name"])
    for path in K8S.glob("*.yaml"):
        assert not AWS_KEY_ID.search(path.read_text()), path.name


# --- the sizing numbers of infra/README.md come from carbonsink.grid ------------------------------
def test_readme_sizes_match_the_grid():
    from carbonsink.grid import get_grid

    g = get_grid("1km")
    text = (INFRA / "README.md").read_text()
    assert g.shape == (3700, 6300)
    assert f"{g.nlat} × {g.nlon} = {g.nlat * g.nlon / 1e6:.2f} M cells" in text
    nt = 21 * 12
    assert f"**{g.nlat * g.nlon * nt * 4 / 1e9:.1f} GB**" in text          # 23.5 GB per variable
    c = g.chunks(nt, target_mb=32)
    tiles = math.ceil(g.nlat / c["lat"]) * math.ceil(g.nlon / c["lon"])
    assert f"{c['lat']} × {c['lon']} cells" in text and f"{tiles} tiles" in text
    assert " ".join(repr(v) for v in g.geotransform) in text
