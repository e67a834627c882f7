"""Storage per pixel equals natcap.invest's carbon model on a shared LULC raster and pool table.

natcap.invest (and GDAL's Python bindings, pygeoprocessing) are not carbonsink dependencies: they
live in a separate venv, ``$CARBONSINK_INVEST_PYTHON`` or /tmp/investvenv, and InVEST runs there in
a subprocess; the test is skipped when that interpreter is absent. Build it (Debian's GDAL 3.6;
pygeoprocessing 2.4.11's sdist needs Cython < 3.1):

    apt-get install -y libgdal-dev gdal-bin g++
    python3 -m venv /tmp/investvenv
    /tmp/investvenv/bin/pip install setuptools wheel numpy "cython>=3.0,<3.1" setuptools_scm
    /tmp/investvenv/bin/pip install --no-build-isolation gdal==$(gdal-config --version)
    /tmp/investvenv/bin/pip install --no-build-isolation pygeoprocessing natcap.invest
"""
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carbonsink.kernels import services as sv

pytestmark = [pytest.mark.unit, pytest.mark.slow]

INVEST_PYTHON = Path(os.environ.get("CARBONSINK_INVEST_PYTHON", "/tmp/investvenv/bin/python"))

_RUN_INVEST = textwrap.dedent("""
    import json, sys
    import numpy as np
    from osgeo import gdal, osr
    from natcap.invest import carbon
    gdal.UseExceptions()
    ws, cfg = sys.argv[1], json.loads(sys.argv[2])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(26910)                       # a projected CRS, as InVEST's own tests use
    def write(name, arr):
        path = f"{ws}/{name}.tif"
        ds = gdal.GetDriverByName("GTiff").Create(path, arr.shape[1], arr.shape[0], 1,
                                                  gdal.GDT_Int32)
        ds.SetGeoTransform((461261.0, 30.0, 0.0, 4923265.0, 0.0, -30.0))
        ds.SetProjection(srs.ExportToWkt())
        band = ds.GetRasterBand(1)
        band.SetNoDataValue(cfg["nodata"])
        band.WriteArray(arr)
        ds = None
        return path
    data = np.load(f"{ws}/lulc.npz")
    args = {"workspace_dir": f"{ws}/out", "lulc_bas_path": write("bas", data["bas"]),
            "lulc_alt_path": write("alt", data["alt"]), "carbon_pools_path": f"{ws}/pools.csv",
            "calc_sequestration": True, "do_valuation": True, "lulc_bas_year": 2016,
            "lulc_alt_year": 2030, "price_per_metric_ton_of_c": 43.0, "discount_rate": -7.1,
            "rate_change": 2.8, "n_workers": -1}
    registry = carbon.execute(args)
    out = {}
    for key in ("c_above_bas", "c_below_bas", "c_soil_bas", "c_dead_bas", "c_storage_bas",
                "c_storage_alt", "c_change_bas_alt", "npv_alt"):
        ds = gdal.Open(registry[key])
        band = ds.GetRasterBand(1)
        a = band.ReadAsArray().astype("f8")
        nd = band.GetNoDataValue()
        if nd is not None:
            a[a == nd] = np.nan
        out[key] = a
    np.savez(f"{ws}/invest.npz", **out)
""")


@pytest.fixture(scope="module")
def invest_run(tmp_path_factory):
    if not INVEST_PYTHON.exists():
        pytest.skip(f"no natcap.invest venv at {INVEST_PYTHON}")
    ws = tmp_path_factory.mktemp("invest")
    rng = np.random.default_rng(42)
    nodata = -1
    bas = rng.integers(1, 7, (40, 50)).astype(np.int32)
    alt = np.where(rng.random(bas.shape) < 0.3, rng.integers(1, 7, bas.shape), bas).astype(np.int32)
    bas[rng.random(bas.shape) < 0.05] = nodata
    alt[bas == nodata] = nodata
    np.savez(ws / "lulc.npz", bas=bas, alt=alt)
    # the seed-003 table written the way InVEST's own tests write theirs (capitalised, a name column)
    pools = pd.DataFrame(sv.SEED003_POOLS)
    pools["LULC_Name"] = [sv.CNLUCC_PRIMARY[c] for c in pools["lucode"]]
    pools.rename(columns={c: c.capitalize() for c in sv.POOL_COLUMNS}).to_csv(ws / "pools.csv",
                                                                               index=False)
    proc = subprocess.run([str(INVEST_PYTHON), "-c", _RUN_INVEST, str(ws),
                           json.dumps({"nodata": nodata})], check=False, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return bas, alt, nodata, pd.read_csv(ws / "pools.csv"), dict(np.load(ws / "invest.npz"))


def test_storage_equals_invest_per_pixel(invest_run):
    bas, alt, nodata, pools, inv = invest_run
    mine = sv.storage_density(bas, pools, nodata=nodata)
    for pool in sv.POOL_COLUMNS:
        # InVEST writes float32 rasters: equal to float32 rounding
        np.testing.assert_allclose(mine[pool], inv[f"{pool}_bas"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mine["c_total"], inv["c_storage_bas"], rtol=1e-6)
    assert np.array_equal(np.isnan(mine["c_total"]), np.isnan(inv["c_storage_bas"]))
    mine_alt = sv.storage_density(alt, pools, nodata=nodata)["c_total"]
    np.testing.assert_allclose(mine_alt, inv["c_storage_alt"], rtol=1e-6)
    change = sv.storage_change(mine["c_total"], mine_alt)
    np.testing.assert_allclose(change, inv["c_change_bas_alt"], rtol=1e-5, atol=1e-4)
    npv = change * sv.npv_factor(43.0, -7.1, 2.8, 2016, 2030)
    np.testing.assert_allclose(npv, inv["npv_alt"], rtol=1e-5, atol=1e-2)
