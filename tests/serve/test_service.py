"""``rayal serve`` end to end: a real ``rayal serve`` process (Ray Serve on a local Ray) on the
synthetic demo data, driven over HTTP on 127.0.0.1 (no in-process test client)."""
from __future__ import annotations

import base64
import io
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rayal.serve.testing import demo_config, free_port, start_serve, stop_serve

ROOT = Path(__file__).resolve().parents[2]
ADMIN, ANNOTATOR, OTHER = "admin-token-0123456789", "annot-token-0123456789", "other-token-0123456789"
START_TIMEOUT, JOB_TIMEOUT = 420, 300   # start: above serve.start_timeout_s (300)


def call(url, method="GET", body=None, token=None, raw: bytes | None = None):
    """(status, parsed JSON or bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, payload, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, payload, kind = err.code, err.read(), err.headers.get("content-type", "")
    return status, json.loads(payload) if "json" in kind else payload


def png64(mask) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def service(module_tmp):
    tmp = module_tmp("serve")
    config = demo_config(tmp, free_port(), [
        {"token": ADMIN, "role": "admin"}, {"token": ANNOTATOR, "role": "annotator"},
        {"token": OTHER, "role": "annotator", "projects": ["other"]}])
    config["serve"]["max_body_bytes"] = 8192
    s = start_serve(config, tmp, START_TIMEOUT)
    try:
        yield {**s, "dir": tmp}
    finally:
        stop_serve(s, signal.SIGKILL)


def wait_job(s, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        status, job = call(f"{s['url']}/v1/projects/demo/jobs/{job_id}", token=ADMIN)
        assert status == 200, job
        if job["state"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(2)


def test_service_end_to_end(service):
    s, v1 = service, service["url"] + "/v1/projects/demo"
    # open health, docs; every /v1 call needs a token of the right role and project
    status, health = call(s["url"] + "/health")
    assert status == 200 and health["status"] == "UP"
    assert call(s["url"] + "/docs")[0] == 200
    assert "/v1/projects/{project}/leases" in call(s["url"] + "/openapi.json")[1]["paths"]
    assert call(v1 + "/status")[0] == 401
    assert call(v1 + "/status", token="not-a-token-at-all")[0] == 401
    assert call(v1 + "/status", token=OTHER)[0] == 403
    assert call(v1 + "/rounds", "POST", {"strategy": "random", "budget": 4}, token=ANNOTATOR)[0] == 403
    status, before = call(v1 + "/status", token=ANNOTATOR)
    assert status == 200 and before["counts"] == {"unlabeled": 48, "queued": 0, "labeled": 0,
                                                  "quarantined": 0}
    assert call(v1 + "/leases", "POST", {"annotator": "a1", "n": 2}, token=ANNOTATOR)[1] == {"tasks": []}

    # a round: score with the current model, select 4 units
    assert call(v1 + "/rounds", "POST", {"strategy": "no-such", "budget": 4}, token=ADMIN)[0] == 422
    status, started = call(v1 + "/rounds", "POST", {"strategy": "entropy", "budget": 4}, token=ADMIN)
    assert status == 202 and started["job_id"]
    job = wait_job(s, started["job_id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["selected"] == 4
    after = call(v1 + "/status", token=ANNOTATOR)[1]
    assert after["counts"]["queued"] == 4 and after["current_round"] == 0

    # leases: disjoint between annotators; an annotator's own leases come back first
    a1 = call(v1 + "/leases", "POST", {"annotator": "a1", "n": 2}, token=ANNOTATOR)[1]["tasks"]
    a2 = call(v1 + "/leases", "POST", {"annotator": "a2", "n": 5}, token=ANNOTATOR)[1]["tasks"]
    assert len(a1) == 2 and len(a2) == 2
    assert not {t["task_id"] for t in a1} & {t["task_id"] for t in a2}
    again = call(v1 + "/leases", "POST", {"annotator": "a1", "n": 1}, token=ANNOTATOR)[1]["tasks"]
    assert again[0]["task_id"] == a1[0]["task_id"]
    assert call(v1 + "/leases", "POST", {"annotator": "a3", "n": 3}, token=ANNOTATOR)[1] == {"tasks": []}

    # task detail: frame, region, pre-annotation
    tid = a1[0]["task_id"]
    status, task = call(f"{v1}/tasks/{tid}", token=ANNOTATOR)
    assert status == 200 and task["holder"] == "a1" and (task["height"], task["width"]) == (48, 64)
    y0, x0, y1, x1 = task["region"]["bbox"]
    assert (y1 - y0, x1 - x0) == (24, 32) and len(task["region"]["polygon"]) == 4
    pred = np.asarray(Image.open(io.BytesIO(base64.b64decode(task["prediction"]["mask_png_base64"]))))
    assert pred.shape == (48, 64) and pred.max() < 8
    status, image = call(f"{v1}/tasks/{tid}/image", token=ANNOTATOR)
    assert status == 200 and Image.open(io.BytesIO(image)).size == (64, 48)

    # bad labels: each a clear 4xx naming the unit and problem, nothing changed
    seq = call(v1 + "/status", token=ANNOTATOR)[1]["journal_seq"]
    bad = [({"task_id": tid, "annotator": "a1", "mask_png_base64": png64(np.full((40, 64), 2))},
            422, "matches neither"),
           ({"task_id": tid, "annotator": "a1", "mask_png_base64": png64(np.full((48, 64), 9))},
            422, "unknown class ids [9]"),
           ({"task_id": tid, "annotator": "a2", "mask_png_base64": png64(np.full((48, 64), 2))},
            409, "leased to another annotator"),
           ({"task_id": tid, "annotator": "a1", "mask_png_base64": "@@not base64@@"}, 422, "base64"),
           ({"task_id": tid, "annotator": "a1"}, 422, "give exactly one of"),
           ({"task_id": tid, "annotator": "a1",
             "coco_rle": {"size": [48, 64], "counts": [0, 3072], "category_id": 11}}, 422,
            "unknown class id 11")]
    for body, code, text in bad:
        status, err = call(v1 + "/labels", "POST", body, token=ANNOTATOR)
        assert status == code and text in err["error"] and err["unit"] == tid, (body.keys(), err)
    status, err = call(v1 + "/labels", "POST", raw=b'{"task_id": ', token=ANNOTATOR)
    assert status == 400 and "malformed JSON" in err["error"]
    big = {"task_id": tid, "annotator": "a1", "mask_png_base64": "A" * 20000}
    assert call(v1 + "/labels", "POST", big, token=ANNOTATOR)[0] == 413
    unchanged = call(v1 + "/status", token=ANNOTATOR)[1]
    assert unchanged["journal_seq"] == seq and unchanged["counts"]["labeled"] == 0
    assert unchanged["per_class"]["units"] == [0] * 8     # one entry per class before any label

    # good labels: PNG, then the same again (idempotent), then COCO RLE for the next task
    good = {"task_id": tid, "annotator": "a1", "mask_png_base64": png64(np.full((48, 64), 2))}
    status, ack = call(v1 + "/labels", "POST", good, token=ANNOTATOR)
    assert status == 200 and ack["labeled"] == 1 and ack["dominant_class"] == 2
    status, ack = call(v1 + "/labels", "POST", good, token=ANNOTATOR)
    assert status == 200 and ack["unchanged"] == 1 and ack["labeled"] == 0
    from pycocotools import mask as coco

    rle = coco.encode(np.asfortranarray(np.ones((48, 64), np.uint8)))
    body = {"task_id": a1[1]["task_id"], "annotator": "a1",
            "coco_rle": {"size": rle["size"], "counts": rle["counts"].decode(), "category_id": 5}}
    status, ack = call(v1 + "/labels", "POST", body, token=ANNOTATOR)
    assert status == 200 and ack["labeled"] == 1 and ack["dominant_class"] == 5
    labelled = call(v1 + "/status", token=ANNOTATOR)[1]
    assert labelled["counts"]["labeled"] == 2 and labelled["counts"]["queued"] == 2
    assert labelled["per_class"]["units"][2] == 1 and labelled["per_class"]["units"][5] == 1

    # retrain: a new model version, used without restarting
    status, started = call(v1 + "/retrain", "POST", token=ADMIN)
    assert status == 202
    job = wait_job(s, started["job_id"])
    assert job["state"] == "succeeded", job
    final = call(v1 + "/status", token=ANNOTATOR)[1]
    assert final["model"]["version"] == 1 and len(final["learning_curve"]) == 1
    assert call(f"{v1}/tasks/{a2[0]['task_id']}", token=ANNOTATOR)[1]["prediction"]["model_version"] == 1

    # SIGINT: a clean stop
    s["proc"].send_signal(signal.SIGINT)
    assert s["proc"].wait(120) == 0
    assert "rayal serve: stopped" in open(s["log"]).read()
