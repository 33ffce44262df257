"""What the app and its route modules share: actor calls that raise the actor's own exception
instead of Ray's wrapper, and the size-bounded JSON body reader."""
from __future__ import annotations

import json

from fastapi import Request

from rayal.pool.tasks import TaskError


def unwrap(ref):
    """ray.get, raising an actor's own exception (TaskError, ValueError) instead of Ray's wrapper."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, BaseException) else err) from None


async def aunwrap(ref):
    """``await`` an ObjectRef (the event loop keeps serving), raising the actor's own exception."""
    import ray

    try:
        return await ref
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, BaseException) else err) from None


async def read_json(request: Request, limit: int) -> dict:
    """The request's JSON object; TaskError 413 over ``limit`` bytes, 400 malformed."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TaskError(413, f"request body of {declared} bytes is over the limit of {limit}")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise TaskError(413, f"request body is over the limit of {limit} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise TaskError(400, f"malformed JSON body: {err}") from None
    if not isinstance(value, dict):
        raise TaskError(400, "the JSON body must be an object")
    return value
