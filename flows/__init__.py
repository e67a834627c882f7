"""Prefect 3 flows and deployments of carbonsink: thin orchestration around ``carbonsink.pipeline``.

- ``demo.py``    the demo end to end: synthetic inputs → every product → catalog
- ``compute.py`` every product from the inputs already published in a store (incremental)
- ``publish.py`` point ``latest`` at given versions and regenerate the catalog
- ``compare.py`` bottom-up vs top-down flux products (a flux manifest, or the synthetic demo)
- ``tasks.py``   the tasks (inputs, one per product, catalog) and the product graph walk
- ``_common.py`` configuration, the Dask task runner, the retry policy
- ``prefect.yaml`` the deployments (yearly full rebuild, monthly incremental update, manual demo)

Ingest of observed inputs is a later issue: these flows start from the demo's synthetic inputs or
from inputs already published in the store. No science lives here — the library does the work, and
carbonsink itself never imports Prefect.
"""
