import json

import pytest

from carbonsink.config import ConfigError, load_config, parse_years

pytestmark = pytest.mark.unit

KEY, SECRET = "AKIACARBONSINKUNIT", "carbonsink-unit-secret-123"


def test_defaults_and_precedence(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("store: s3://bkt/root\ngrid: '0.25'\nyears: 2001-2010\n"
                        "cluster: {n_workers: 3}\n")
    env = {"CARBONSINK_GRID": "0.5", "CARBONSINK_SCHEDULER": "tcp://127.0.0.1:8786"}
    cfg = load_config(cfg_file, env=env, years="2002-2003")
    assert cfg.grid == "0.5deg"                   # env over YAML (canonical spelling)
    assert cfg.years == (2002, 2003)              # explicit over env/YAML
    assert cfg.cluster.n_workers == 3             # YAML over default
    assert cfg.cluster.scheduler == "tcp://127.0.0.1:8786"
    assert cfg.rh_model == "soil_tps" and cfg.year_list == [2002, 2003]


def test_secrets_only_from_env_and_never_shown(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    cfg = load_config(env=env, store="s3://bkt/x")
    shown = repr(cfg) + str(cfg) + json.dumps(cfg.public_dict()) + cfg.config_hash()
    assert KEY not in shown and SECRET not in shown
    opts = cfg.resolved_storage_options()
    assert opts["key"] == KEY and opts["secret"] == SECRET
    assert opts["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9"
    # a local store never receives the keys
    assert "key" not in load_config(env=env, store=str(tmp_path)).resolved_storage_options()


def test_yaml_with_keys_is_rejected_without_echoing_them(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(f"store: s3://bkt/x\nstorage_options: {{key: {KEY}, secret: {SECRET}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert "must not hold secrets" in str(e.value)
    assert SECRET not in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid="0.3"), "does not divide 1°"),
    (dict(domain="atlantis"), "unknown domain 'atlantis'"),
    (dict(domain="bbox:10,10,20,20"), "does not overlap China"),
    (dict(domain="/nowhere/basin.gpkg"), "does not exist"),
    (dict(region_sets=["provinces"]), "unknown region set 'provinces'"),
    (dict(years="2020-2000"), "backwards"),
    (dict(years="20x0"), "years must look like"),
    (dict(rh_model="magic"), "rh_model"),
    (dict(chunk_mb=-1), "chunk_mb"),
])
def test_invalid_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_config(env={}, **kwargs)


def test_config_hash_tracks_results_not_location():
    a = load_config(env={}, store="/tmp/a")
    b = load_config(env={}, store="/tmp/b", **{"cluster.n_workers": 5})
    c = load_config(env={}, store="/tmp/a", rh_model="pei")
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_parse_years():
    assert parse_years("2000-2020") == (2000, 2020)
    assert parse_years("2005") == (2005, 2005)
    assert parse_years("2000–2002") == (2000, 2002)
