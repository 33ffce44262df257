"""The Label Studio ML backend protocol of ``rayal serve`` (/setup, /predict, /webhook, signed
images, the tasks export) over real HTTP on 127.0.0.1 against a running ``rayal serve``."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rayal.pool.formats.brush import mask_to_rle, rle_to_mask
from rayal.serve.testing import demo_config, free_port, start_serve, stop_serve

ROOT = Path(__file__).resolve().parents[2]
ADMIN, ANNOTATOR = "ls-admin-token-0123456789", "ls-annot-token-0123456789"
START_TIMEOUT, JOB_TIMEOUT = 240, 300
H, W = 48, 64
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
          + "".join(f'<Label value="{i}"/>' for i in range(8)) + "</BrushLabels></View>")


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"labelstudio:{token}".encode()).decode()


def call(url, method="GET", body=None, auth=None):
    """(status, parsed JSON or bytes); ``auth``: a full Authorization header value."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, payload, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        status, payload, kind = err.code, err.read(), err.headers.get("content-type", "")
    return status, json.loads(payload) if "json" in kind else payload


def start(tmp: Path, extra: dict | None = None) -> dict:
    """A ``rayal serve`` subprocess on the synthetic demo data; returns url, proc, log."""
    config = demo_config(tmp, free_port(), [{"token": ADMIN, "role": "admin"},
                                            {"token": ANNOTATOR, "role": "annotator"}],
                         name="lstest", height=H, width=W, **(extra or {}))
    return start_serve(config, tmp, START_TIMEOUT)


def stop(s: dict) -> None:
    stop_serve(s, signal.SIGKILL)


def wait_job(url: str, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        status, job = call(f"{url}/v1/projects/demo/jobs/{job_id}", auth=f"Bearer {ADMIN}")
        assert status == 200, job
        if job["state"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(2)


@pytest.fixture(scope="module")
def service(module_tmp):
    s = start(module_tmp("ls"))
    try:
        status, started = call(s["url"] + "/v1/projects/demo/rounds", "POST",
                               {"strategy": "entropy", "budget": 4}, auth=f"Bearer {ADMIN}")
        assert status == 202, started
        assert wait_job(s["url"], started["job_id"])["state"] == "succeeded"
        yield s
    finally:
        stop(s)


def webhook(url, task, result, who=7, action="ANNOTATION_CREATED", auth=f"Bearer {ANNOTATOR}"):
    body = {"action": action, "project": {"id": 1, "label_config": CONFIG},
            "task": {"id": 11, "data": task["data"]},
            "annotation": {"id": 5, "completed_by": who, "result": result}}
    return call(url + "/webhook", "POST", body, auth=auth)


def brush(mask, label: str, width=W, height=H):
    return {"type": "brushlabels", "from_name": "tag", "to_name": "image",
            "original_width": width, "original_height": height,
            "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]}}


def test_label_studio_protocol(service):
    url, v1 = service["url"], service["url"] + "/v1/projects/demo"
    bearer, admin = f"Bearer {ANNOTATOR}", f"Bearer {ADMIN}"
    status, health = call(url + "/health")
    assert status == 200 and health["status"] == "UP"

    # /setup: Label Studio's Basic auth carries the token; the config must segment
    setup = {"project": "1.1700000000", "schema": CONFIG, "hostname": "http://localhost:8080",
             "access_token": "x", "extra_params": None}
    assert call(url + "/setup", "POST", setup)[0] == 401
    assert call(url + "/setup", "POST", setup, auth=basic("wrong-token-0123456789"))[0] == 401
    status, ok = call(url + "/setup", "POST", setup, auth=basic(ANNOTATOR))
    assert status == 200 and ok == {"model_version": "rayal-v0"}
    status, err = call(url + "/setup", "POST", {**setup, "schema": '<View><Image name="i" '
                                                'value="$image"/></View>'}, auth=basic(ANNOTATOR))
    assert status == 422 and "no <BrushLabels>" in err["error"]

    # the tasks to import into Label Studio: the round's query in rank order, signed images
    status, tasks = call(v1 + "/labelstudio/tasks", auth=bearer)
    assert status == 200 and [t["data"]["rank"] for t in tasks] == [0, 1, 2, 3]
    image = tasks[0]["data"]["image"]
    assert image.startswith(url + "/labelstudio/image/")
    status, png = call(image)
    assert status == 200 and Image.open(io.BytesIO(png)).size == (W, H)
    assert call(image.split("?")[0] + "?sig=0000")[0] == 403
    assert call(v1 + "/labelstudio/tasks")[0] == 401

    # /predict: brush RLE of the model's classes inside the unit, score = AL priority
    ls_tasks = [{"id": 100 + i, "data": t["data"]} for i, t in enumerate(tasks[:2])]
    body = {"tasks": ls_tasks, "project": "1.1700000000", "label_config": CONFIG,
            "params": {"login": None, "password": None, "context": None}}
    status, pred = call(url + "/predict", "POST", body, auth=basic(ANNOTATOR))
    assert status == 200 and len(pred["results"]) == 2
    assert [r["score"] for r in pred["results"]] == [1.0, 0.75]
    assert all(r["model_version"] == "rayal-v0" for r in pred["results"])
    for task, res in zip(tasks, pred["results"]):
        detail = call(f"{v1}/tasks/{task['data']['rayal_task']}", auth=bearer)[1]
        model = np.asarray(Image.open(io.BytesIO(base64.b64decode(
            detail["prediction"]["mask_png_base64"]))))
        y0, x0, y1, x1 = detail["region"]["bbox"]
        region = np.zeros((H, W), bool)
        region[y0:y1, x0:x1] = True
        painted = np.full((H, W), 255)
        for r in res["result"]:
            assert r["type"] == "brushlabels" and (r["from_name"], r["to_name"]) == ("tag", "image")
            layer = rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
            assert not (layer & ~region).any()
            painted[layer] = int(r["value"]["brushlabels"][0])
        assert (painted[region] == model[region]).all() and (painted[~region] == 255).all()
    status, err = call(url + "/predict", "POST", {**body, "tasks": [{"id": 9, "data": {"image": "x"}}]},
                       auth=basic(ANNOTATOR))
    assert status == 422 and err["error"].startswith("task 9:") and "rayal_task" in err["error"]

    # malformed webhooks: a clear 4xx each, nothing in the pool changed, no lease taken
    target = tasks[2]
    tid = target["data"]["rayal_task"]
    before = call(v1 + "/status", auth=bearer)[1]
    full = np.ones((H, W), bool)
    bad = [([brush(full, "3", width=W + 2)], 422, "does not match the frame's 64x48"),
           ([brush(full, "cat")], 422, "unknown label 'cat'"),
           ([{**brush(full, "3"), "value": {"format": "rle", "rle": [9, 9, 9],
                                             "brushlabels": ["3"]}}], 422, "at least 7 byte"),
           ([{"type": "choices", "value": {"choices": ["x"]}}], 422, "no brushlabels")]
    for result, code, text in bad:
        status, err = webhook(url, target, result)
        assert status == code and text in err["error"] and err["unit"] == tid, err
    status, err = call(url + "/webhook", "POST", {"action": "ANNOTATION_CREATED", "task": {}},
                       auth=bearer)
    assert status == 422 and "needs 'annotation' and 'task'" in err["error"]
    assert webhook(url, target, [brush(full, "3")], auth=None)[0] == 401
    after = call(v1 + "/status", auth=bearer)[1]
    assert after["journal_seq"] == before["journal_seq"] and after["counts"] == before["counts"]
    assert call(f"{v1}/tasks/{tid}", auth=bearer)[1]["holder"] is None

    # a unit a /v1 annotator holds is not theirs to label
    held = call(v1 + "/leases", "POST", {"annotator": "a1", "n": 1}, auth=bearer)[1]["tasks"][0]
    status, err = webhook(url, {"data": {"rayal_task": held["task_id"]}}, [brush(full, "3")])
    assert status == 409 and "leased to another annotator" in err["error"]

    # a good ANNOTATION_CREATED labels the unit; ANNOTATION_UPDATED changes it
    status, ack = webhook(url, target, [brush(full, "3")])
    assert status == 201 and ack["status"] == "ok" and ack["result"]["labeled"] == 1, ack
    assert ack["result"]["dominant_class"] == 3
    labelled = call(v1 + "/status", auth=bearer)[1]
    assert labelled["counts"]["labeled"] == before["counts"]["labeled"] + 1
    assert labelled["per_class"]["units"][3] == 1
    status, ack = webhook(url, target, [brush(full, "3")])
    assert status == 201 and ack["result"]["unchanged"] == 1
    status, ack = webhook(url, target, [brush(full, "5")], action="ANNOTATION_UPDATED")
    assert status == 201 and ack["result"]["dominant_class"] == 5
    assert webhook(url, target, [brush(full, "1")], who=8)[0] == 409   # another LS user

    # /v1/labels takes Label Studio results too (polygon here)
    mine = call(v1 + "/leases", "POST", {"annotator": "a2", "n": 1}, auth=bearer)[1]["tasks"][0]
    poly = {"type": "polygonlabels", "original_width": W, "original_height": H,
            "value": {"points": [[0, 0], [100, 0], [100, 100], [0, 100]], "polygonlabels": ["6"]}}
    status, ack = call(v1 + "/labels", "POST", {"task_id": mine["task_id"], "annotator": "a2",
                                                "labelstudio": [poly]}, auth=bearer)
    assert status == 200 and ack["dominant_class"] == 6

    # other actions are ignored; START_TRAINING needs an admin token and retrains
    status, ack = call(url + "/webhook", "POST", {"action": "PROJECT_UPDATED"}, auth=bearer)
    assert status == 200 and ack["status"] == "ignored"
    start = {"action": "START_TRAINING", "project": {"id": 1}}
    assert call(url + "/webhook", "POST", start, auth=bearer)[0] == 403
    status, ack = call(url + "/webhook", "POST", start, auth=admin)
    assert status == 201 and ack["job_id"]
    assert wait_job(url, ack["job_id"])["state"] == "succeeded"
    status, ok = call(url + "/setup", "POST", setup, auth=basic(ANNOTATOR))
    assert ok["model_version"] == "rayal-v1"


# --- a real Label Studio --------------------------------------------------------------------
LS_TOKEN = "lstoken0123456789abcdef0123456789abcdef"
LS_START_TIMEOUT, LS_WEBHOOK_TIMEOUT = 300, 60


def _ls(base, path, method="GET", body=None):
    return call(base + path, method, body, auth=f"Token {LS_TOKEN}")


@pytest.mark.slow
def test_real_label_studio(service, label_studio_venv, tmp_path):
    """Label Studio (pip-installed into tmp, on 127.0.0.1) with rayal as its ML backend:
    import rayal's tasks, get predictions ordered by rayal's selection, annotate through Label
    Studio's API, see the unit labelled in rayal's pool."""
    url, v1 = service["url"], service["url"] + "/v1/projects/demo"
    bearer = f"Bearer {ANNOTATOR}"
    # a fresh round of its own, so the units do not depend on the other test
    status, started = call(v1 + "/rounds", "POST", {"strategy": "entropy", "budget": 3},
                           auth=f"Bearer {ADMIN}")
    assert status == 202 and wait_job(url, started["job_id"])["state"] == "succeeded"
    status, tasks = call(v1 + "/labelstudio/tasks", auth=bearer)
    assert status == 200 and len(tasks) == 3

    venv = label_studio_venv    # installed in the background (tests/serve/conftest.py)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "rayal@example.com",
           "LABEL_STUDIO_PASSWORD": "rayal-test-password", "LABEL_STUDIO_USER_TOKEN": LS_TOKEN,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
           "ML_BLOCK_LOCAL_IP": "false",            # rayal is on loopback
           "SSRF_PROTECTION_ENABLED": "false",      # so is the webhook Label Studio calls
           "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "lsdata"), "COLLECT_ANALYTICS": "false"}
    log = open(tmp_path / "ls.log", "w+")
    proc = subprocess.Popen([str(venv / "bin" / "label-studio"), "start", "--no-browser",
                             "--host", "127.0.0.1", "--internal-host", "127.0.0.1", "--port",
                             str(port), "--data-dir", str(tmp_path / "lsdata")], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LS_START_TIMEOUT
        while True:
            assert proc.poll() is None, open(log.name).read()[-3000:]
            assert time.monotonic() < deadline, "Label Studio did not come up: " + \
                open(log.name).read()[-3000:]
            try:
                if call(base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(2)

        status, project = _ls(base, "/api/projects", "POST", {"title": "rayal", "label_config": CONFIG})
        assert status == 201, project
        pid = project["id"]
        # rayal as the project's ML backend: Basic auth carries the annotator token
        status, ml = _ls(base, "/api/ml", "POST", {
            "project": pid, "url": url, "title": "rayal", "auth_method": "BASIC_AUTH",
            "basic_auth_user": "labelstudio", "basic_auth_pass": ANNOTATOR, "is_interactive": False})
        version = call(url + "/health")[1]["model_version"]   # 1 after the other test's retrain
        assert status == 201 and ml["state"] == "CO" and ml["model_version"] == f"rayal-v{version}", ml
        # the webhook Label Studio made for the backend sends the token as a header
        status, hooks = _ls(base, f"/api/webhooks/?project={pid}")
        hook = next(h for h in hooks if h["url"] == url + "/webhook")
        status, _ = _ls(base, f"/api/webhooks/{hook['id']}/", "PATCH",
                        {"headers": {"Authorization": bearer}})
        assert status == 200

        # import in reverse rank order; Label Studio's sort by prediction score restores it
        status, imported = _ls(base, f"/api/projects/{pid}/import", "POST", tasks[::-1])
        assert status == 201 and imported["task_count"] == 3, imported
        status, done = _ls(base, f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                           "POST", {"selectedItems": {"all": True, "excluded": []}})
        assert status == 200, done
        # the project's predictions to show and sort by: rayal's model version
        assert _ls(base, f"/api/projects/{pid}", "PATCH", {"model_version": f"rayal-v{version}"})[0] == 200
        order = urllib.parse.quote(json.dumps({"ordering": ["-tasks:predictions_score"]}))
        status, listed = _ls(base, f"/api/tasks?project={pid}&fields=all&query={order}")
        assert status == 200
        ls_tasks = listed["tasks"]
        assert [t["data"]["rank"] for t in ls_tasks] == [0, 1, 2]
        for t in ls_tasks:
            (pred,) = t["predictions"]
            assert pred["model_version"] == f"rayal-v{version}"
            assert pred["score"] == pytest.approx(1 - t["data"]["rank"] / 3)
            assert pred["result"] and all(r["type"] == "brushlabels" for r in pred["result"])

        # an annotation submitted through Label Studio labels the unit in rayal's pool
        before = call(v1 + "/status", auth=bearer)[1]
        target = ls_tasks[1]
        result = [brush(np.ones((H, W), bool), "6")]
        status, annotation = _ls(base, f"/api/tasks/{target['id']}/annotations", "POST",
                                 {"result": result})
        assert status == 201, annotation
        deadline = time.monotonic() + LS_WEBHOOK_TIMEOUT
        while True:
            now = call(v1 + "/status", auth=bearer)[1]
            if now["counts"]["labeled"] > before["counts"]["labeled"]:
                break
            assert time.monotonic() < deadline, "the annotation never reached rayal: " + \
                open(log.name).read()[-3000:]
            time.sleep(1)
        assert now["counts"]["labeled"] == before["counts"]["labeled"] + 1
        assert now["per_class"]["units"][6] == before["per_class"]["units"][6] + 1
        labelled = call(v1 + f"/tasks/{target['data']['rayal_task']}", auth=bearer)[1]
        assert labelled["holder"] is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
