"""Issue "Trust the store": secrets denied by shape (run YAML, storage options, catalog), calendar
year bounds, and one spelling per grid in the configuration hash."""
import pytest

from carbonsink.catalog import _public_options
from carbonsink.config import ConfigError, load_config, parse_years, secret_paths
from carbonsink.io.manifest import ManifestError
from carbonsink.io.store import Store

pytestmark = pytest.mark.unit

KEY_ID = "AKIAIOSFODNN7EXAMPLE"          # AWS's documented example access key id
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SSE_KEY = "c2VjcmV0LWN1c3RvbWVyLWtleS0zMi1ieXRlcyEhIQ=="


# --- secrets: shape, not a list of names --------------------------------------------------------
@pytest.mark.parametrize("text, path", [
    (f"aws_access_key_id: {KEY_ID}\n", "aws_access_key_id"),
    (f"aws_secret_access_key: {SECRET}\n", "aws_secret_access_key"),
    ("store: s3://bkt/x\nstorage_options: {s3_additional_kwargs: {SSECustomerKey: "
     f"'{SSE_KEY}'}}}}\n", "storage_options.s3_additional_kwargs.SSECustomerKey"),
    (f"store: s3://bkt/x\nstorage_options: {{client_kwargs: {{aws_session_token: '{SECRET}'}}}}\n",
     "storage_options.client_kwargs.aws_session_token"),
    (f"store: s3://bkt/x\nstorage_options: {{profiles: [{{Password: '{SECRET}'}}]}}\n",
     "storage_options.profiles[0].Password"),
    (f"store: s3://bkt/x\nstorage_options: {{note: 'id {KEY_ID}'}}\n", "storage_options.note"),
])
def test_yaml_with_secret_shaped_keys_is_rejected(tmp_path, text, path):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert path in msg and "AWS_ACCESS_KEY_ID" in msg and "\n" not in msg
    for value in (KEY_ID, SECRET, SSE_KEY):
        assert value not in msg


def test_defaults_and_overrides_with_secrets_are_rejected():
    with pytest.raises(ConfigError, match="aws_secret_access_key"):
        load_config(env={}, defaults={"aws_secret_access_key": SECRET})
    with pytest.raises(ConfigError, match=r"storage_options\.token"):
        load_config(env={}, storage_options={"token": SECRET})


def test_keys_from_the_environment_are_accepted():
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_SESSION_TOKEN": "tok", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    opts = load_config(env=env, store="s3://bkt/x").resolved_storage_options()
    assert (opts["key"], opts["secret"], opts["token"]) == (KEY_ID, SECRET, "tok")


def test_non_secret_options_pass(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("store: s3://bkt/x\nstorage_options:\n"
                 "  anon: false\n  use_ssl: true\n  profile: default\n  requester_pays: true\n"
                 "  cache_regions: true\n  endpoint_url: http://127.0.0.1:9\n"
                 "  client_kwargs: {endpoint_url: 'http://127.0.0.1:9', region_name: eu-west-1}\n"
                 "  config_kwargs: {signature_version: s3v4, connect_timeout: 2,\n"
                 "                  retries: {max_attempts: 2, mode: standard}}\n"
                 "  s3_additional_kwargs: {ServerSideEncryption: AES256}\n")
    cfg = load_config(f, env={})
    assert cfg.storage_options["config_kwargs"]["signature_version"] == "s3v4"
    assert secret_paths(cfg.storage_options) == []


@pytest.mark.parametrize("name", ["key", "Secret", "sas-token", "db.password", "passwd",
                                  "credentials", "x_amz_signature", "Authorization",
                                  "SSECustomerKey", "SSEKMSKeyId", "private_key", "client_cert"])
def test_secret_shapes(name):
    assert secret_paths({"a": {name: "v"}}) == [f"a.{name}"]


def test_manifest_storage_options_are_checked_by_shape():
    from carbonsink.io.manifest import load_manifest
    m = {"name": "observed", "grid": "1", "years": "2000-2001",
         "storage_options": {"s3_additional_kwargs": {"SSECustomerKey": SSE_KEY}},
         "variables": {}}
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    assert "storage_options.s3_additional_kwargs.SSECustomerKey" in str(e.value)
    assert SSE_KEY not in str(e.value)


def test_catalog_writes_only_allowed_storage_options():
    opts = {"key": KEY_ID, "secret": SECRET, "anon": False, "endpoint_url": "http://h:9",
            "region_name": "eu-west-1", "use_ssl": True,
            "client_kwargs": {"endpoint_url": "http://h:9", "region_name": "eu-west-1",
                              "aws_session_token": "tok", "verify": False},
            "config_kwargs": {"signature_version": "s3v4"},
            "s3_additional_kwargs": {"SSECustomerKey": SSE_KEY, "SSECustomerAlgorithm": "AES256"}}
    public = _public_options(Store("memory://catalog-hardening", opts))
    assert public == {"anon": False, "endpoint_url": "http://h:9", "region_name": "eu-west-1",
                      "client_kwargs": {"endpoint_url": "http://h:9", "region_name": "eu-west-1"}}
    assert _public_options(Store("memory://catalog-hardening-2", {})) == {}


# --- years --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1-99999", "1899-2000", "2000-2101", "0"])
def test_years_outside_calendar_bounds_are_rejected(text):
    with pytest.raises(ConfigError, match=f"{text}.*1900.2100"):
        parse_years(text)
    with pytest.raises(ConfigError, match="1900.2100"):
        load_config(env={}, years=text)


def test_year_bounds_also_hold_for_lists_and_manifests(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("years: [1, 99999]\n")
    with pytest.raises(ConfigError, match="1900.2100"):
        load_config(f, env={})
    from carbonsink.io.manifest import load_manifest
    with pytest.raises(ManifestError, match="1900.2100"):
        load_manifest({"name": "observed", "years": "1-99999", "variables": {}})
    assert parse_years("1900-2100") == (1900, 2100)


# --- one spelling per grid ----------------------------------------------------------------------
@pytest.mark.parametrize("spellings", [("1", "1deg", "1.0", "1°", " 1deg"),
                                       ("1km", "0.01", "0.01deg", "0.010"),
                                       ("0.1", "0.1deg", ".1", "0.10")])
def test_grid_spellings_hash_alike(spellings):
    cfgs = [load_config(env={}, grid=g) for g in spellings]
    assert len({c.config_hash() for c in cfgs}) == 1
    assert len({c.grid for c in cfgs}) == 1
    # what the pipeline compares published inputs' records against
    assert all(c.grid == c.grid_obj().name for c in cfgs)


def test_different_grids_hash_differently():
    hashes = {load_config(env={}, grid=g).config_hash() for g in ("1", "0.5", "0.1", "1km")}
    assert len(hashes) == 4
    assert load_config(env={}).config_hash() == load_config(env={}, grid="0.1deg").config_hash()


@pytest.mark.parametrize("name", ["lulc_classes", "ip_addresses", "SSECustomerAlgorithm_"])
def test_sse_only_as_a_prefix(name):
    """"sse" marks server-side-encryption options by their start only: a run config with a services
    section (``services.lulc_classes``) is no secret (it stopped `carbonsink verify` once)."""
    expected = [f"a.{name}"] if name.lower().startswith("sse") else []
    assert secret_paths({"a": {name: "v"}}) == expected


def test_a_services_section_loads(tmp_path):
    from importlib.resources import files

    data = files("carbonsink") / "data"
    f = tmp_path / "run.yaml"
    f.write_text(f"services: {{lulc_classes: {data / 'cnlucc_classes.csv'}, "
                 f"carbon_pools: {data / 'carbon_pools_seed003.csv'}}}\n")
    cfg = load_config(f, env={})
    assert str(cfg.services.lulc_classes).endswith("cnlucc_classes.csv")
