"""Published weights as subjects: importers of the authors' checkpoints into our encoder.

``load_published(format, path, **explicit) -> (encoder, report)`` reads one of three layouts:

- ``weimann-jepa``: Weimann & Conrad's JEPA (github kweimann/ECG-JEPA), full or minified;
- ``kim-ecg-jepa``: Kim's ECG-JEPA with CroPA (github sehunfromdaegu/ECG_JEPA), the paper's
  sin-cos encoder;
- ``st-mem``: Na et al.'s ST-MEM (github bakqui/ST-MEM), encoder or full pre-training checkpoint.

Each maps every tensor into a :class:`~bench.encoders.ViT1D` built with the options that make it
the authors' architecture exactly (FACTS.md lists the facts, with their sources), strictly: a
missing, unexpected or mis-shaped tensor is a :class:`~bench.errors.BenchError` naming it. The
report carries the format, the file's SHA-256, the architecture, the options, the reference's
input (leads, rate, preprocessing) and the tensor mapping. Checkpoints are read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.published.common import FORMATS, file_sha256

__all__ = ["FORMATS", "load_published"]


def load_published(fmt: str, path: str | Path, **explicit: Any) -> tuple[Any, dict[str, Any]]:
    """Import a published checkpoint.

    Args:
        fmt: one of :data:`FORMATS`.
        path: the checkpoint file.
        explicit: architecture values the file cannot tell (``heads=`` for ECG-JEPA / ST-MEM,
            ``n_leads=`` for ECG-JEPA); refused where the file fixes them.

    Returns:
        ``(encoder, report)``: an eval-mode :class:`~bench.encoders.ViT1D` holding the file's
        weights, and a JSON-ready dict (``format``, ``sha256``, ``architecture``, ``options``,
        ``input``, ``mapping``: ``[source tensor, our tensor, shape]`` rows).
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown checkpoint format {fmt!r}; choose from {list(FORMATS)}")
    if fmt == "weimann-jepa":
        from bench.published import weimann_jepa as module
    elif fmt == "kim-ecg-jepa":
        from bench.published import kim_ecg_jepa as module
    else:
        from bench.published import st_mem as module
    path = Path(path)
    encoder, report = module.load(path, **explicit)
    report = {
        **report,
        "path": str(path),
        "sha256": file_sha256(path),
        "mapping": [[src, dst, list(shape)] for src, dst, shape in report["mapping"]],
    }
    return encoder.eval(), report
