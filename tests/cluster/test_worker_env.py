"""A driver connecting to a running cluster (``ray.address``) passes its object-store settings
(``AWS_ENDPOINT_URL*``, region) to the cluster's workers, and never its credentials: the head
was started without them, so the workers see them only through the job's ``runtime_env``."""
from __future__ import annotations

import json
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.slow   # needs the session's Ray head

DRIVER = textwrap.dedent("""
    import json, os, sys
    import ray
    from rayal.config.sections import RayConfig
    from rayal.pipeline.runtime import init_ray

    init_ray(RayConfig(address=sys.argv[1]))
    names = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")

    @ray.remote(num_cpus=0)
    def worker_env():
        return {k: os.environ.get(k) for k in names}

    print(json.dumps(ray.get(worker_env.remote())))
""")


def test_cluster_workers_reach_the_same_object_store(ray_head):
    endpoint = f"http://127.0.0.1:1/rayal-{uuid.uuid4().hex[:8]}"
    secret = f"secret-{uuid.uuid4().hex}"
    done = ray_head.run(sys.executable, "-c", DRIVER, ray_head.gcs_address, timeout=180,
                        env={"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "eu-west-3",
                             "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIARAYALTEST"})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["AWS_ENDPOINT_URL"] == endpoint and seen["AWS_DEFAULT_REGION"] == "eu-west-3"
    assert seen["AWS_SECRET_ACCESS_KEY"] != secret and seen["AWS_ACCESS_KEY_ID"] != "AKIARAYALTEST"
