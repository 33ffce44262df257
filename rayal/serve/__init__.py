"""``rayal serve``: the active-learning HTTP service annotation tools talk to (Ray Serve +
FastAPI) over the project's :class:`~rayal.pool.coordinator.PoolCoordinator`.

* :mod:`rayal.serve.service` — start / stop: Ray, actors, the Serve application.
* :mod:`rayal.serve.app`, :mod:`rayal.serve.routes` — the FastAPI app and its ``/v1`` routes.
* :mod:`rayal.serve.auth` — bearer tokens, roles ``annotator`` / ``admin``.
* :mod:`rayal.serve.leases` — the ``TaskDesk`` actor: annotator leases, label commits.
* :mod:`rayal.serve.labels` — label formats (PNG, COCO RLE) and their validation.
* :mod:`rayal.serve.jobs` — background round (score + select) and retrain jobs.
* :mod:`rayal.serve.models` — model versions and pre-annotation predictions.
* :mod:`rayal.serve.ls_routes`, :mod:`rayal.pool.formats.ls_results`, :mod:`rayal.pool.formats.brush` — the
  Label Studio ML backend protocol (``/setup``, ``/predict``, ``/webhook``), results <-> masks,
  brush RLE.
"""
