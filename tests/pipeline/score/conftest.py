"""Helpers of the scoring fault tests: a frame store whose last reads stall, so that a kill
always lands mid-job however fast the machine."""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from rayal.data import synthetic_uri, write_manifest
from rayal.data.synthetic import load_synthetic


def _png(index: int, height: int, width: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(load_synthetic(synthetic_uri(0, index), height, width)[0]).save(buf, "PNG")
    return buf.getvalue()


class StalledFrames:
    """``n`` synthetic frames (seed 0, ``height`` x ``width``) as PNG files in ``folder`` and a
    parquet manifest of them; the frames at indices ``stalled`` are FIFOs until restored.

    A FIFO with no writer blocks its reader's open, as a read from a hung network mount
    does: a job cannot finish (however fast the machine) before the test kills it. (A FIFO
    cannot be served to its blocked readers instead: pyarrow's local input stream seeks, which a
    FIFO refuses.)"""

    def __init__(self, folder: Path, n: int, stalled: range, height: int = 64, width: int = 96):
        folder.mkdir(parents=True)
        self.ids = [f"frame_{i:04d}" for i in range(n)]
        self.paths = [folder / f"{f}.png" for f in self.ids]
        self.stalled = stalled
        self._png = {i: _png(i, height, width) for i in range(n)}
        for i, path in enumerate(self.paths):
            if i in stalled:
                os.mkfifo(path)
            else:
                path.write_bytes(self._png[i])
        self.manifest = folder / "pool.parquet"
        write_manifest({"frame_id": self.ids, "uri": [str(p) for p in self.paths]}, str(self.manifest))

    def restore(self) -> None:
        """The mount is back: plain files replace the FIFOs (the readers blocked on them must
        have been killed)."""
        for i in self.stalled:   # atomically: a retry may open the path at any moment
            temp = self.paths[i].with_suffix(".tmp")
            temp.write_bytes(self._png[i])
            os.replace(temp, self.paths[i])
