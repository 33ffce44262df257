"""Task ids: one annotation unit of one round as a string, ``<round>.<region_id>.<frame_id>``
(``region_id`` -1: the whole frame), shared by the service's leases and labels and the labelling
formats (:mod:`rayal.pool.formats`), and the error a refused task request raises.
"""
from __future__ import annotations


class TaskError(Exception):
    """A request about a unit the desk refuses: ``status`` (404, 409, 422), ``unit`` (task id or
    None) and ``message``."""

    def __init__(self, status: int, message: str, unit: str | None = None):
        super().__init__(status, message, unit)
        self.status, self.message, self.unit = status, message, unit

    def to_dict(self) -> dict:
        return {"error": self.message, "unit": self.unit}


def task_id(round_id: int, frame_id: str, region_id: int) -> str:
    return f"{int(round_id)}.{int(region_id)}.{frame_id}"


def parse_task_id(value: str) -> tuple[int, str, int]:
    """``<round>.<region_id>.<frame_id>`` -> (round, frame_id, region_id); 404 when malformed."""
    parts = str(value).split(".", 2)
    try:
        return int(parts[0]), parts[2], int(parts[1])
    except (IndexError, ValueError):
        raise TaskError(404, f"malformed task id {value!r} (expected <round>.<region>.<frame_id>)",
                        str(value)) from None


__all__ = ["TaskError", "task_id", "parse_task_id"]
