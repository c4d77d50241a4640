"""Published PTB-XL numbers (PROTOCOL.md section 2), shown as context rows in the leaderboard.

They were measured by others with different sampling rates, leads, windows, backbones and even
PTB-XL versions, so they are never mixed into the measured ranking: every row carries
``published=True`` and its source, and the reports mark it as "published, not re-measured".
Values are test macro AUROC on fold 10 of the official split unless ``note`` says otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class PublishedResult:
    method: str  # the harness method it corresponds to ("supervised" for the reference rows)
    label: str  # how the row is shown, e.g. "jepa ViT-XS (Weimann & Conrad 2024)"
    task: str
    protocol: str  # linear | attentive | finetune
    auroc: float
    source: str
    note: str = ""


def _rows(method, label, source, protocol, values: dict[str, float], note="") -> list:
    return [
        PublishedResult(method, label, task, protocol, auroc, source, note)
        for task, auroc in values.items()
    ]


_WEIMANN = "Weimann & Conrad 2024, arXiv 2410.13867"
_KIM = "Kim 2024, arXiv 2410.08559 (independent evaluation of the author's checkpoint)"
_MEHARI = "Mehari & Strodthoff 2022 (xresnet1d50 backbone)"
_STRODTHOFF = "Strodthoff et al. 2021 (full release)"
_FOLDS_1_8 = "pre-trained on PTB-XL folds 1-8 only"

PUBLISHED: tuple[PublishedResult, ...] = tuple(
    _rows("jepa", "JEPA ViT-XS", _WEIMANN, "finetune", {"all_statements": 0.940}, _FOLDS_1_8)
    + _rows("jepa", "JEPA ViT-XS", _WEIMANN, "attentive", {"all_statements": 0.931}, _FOLDS_1_8)
    + _rows("jepa", "JEPA ViT-S", _WEIMANN, "finetune", {"all_statements": 0.930}, _FOLDS_1_8)
    + _rows("jepa", "JEPA ViT-S", _WEIMANN, "attentive", {"all_statements": 0.926}, _FOLDS_1_8)
    + _rows(
        "jepa", "JEPA ViT-S (1.01 M records)", _WEIMANN, "finetune", {"all_statements": 0.945},
        "pre-trained on 1.01 M records",
    )
    + _rows(
        "jepa", "JEPA ViT-S (1.01 M records)", _WEIMANN, "attentive", {"all_statements": 0.938},
        "pre-trained on 1.01 M records",
    )
    + _rows("random", "random-init ViT-S", _WEIMANN, "finetune", {"all_statements": 0.883})
    + _rows("random", "random-init ViT-S", _WEIMANN, "attentive", {"all_statements": 0.833})
    + _rows(
        "ecg_jepa", "ECG-JEPA", _KIM, "linear",
        {"all_statements": 0.928, "superdiagnostic": 0.911, "form": 0.908, "rhythm": 0.969},
    )
    + _rows(
        "ecg_jepa", "ECG-JEPA", _KIM, "finetune",
        {"all_statements": 0.940, "superdiagnostic": 0.921, "form": 0.912, "rhythm": 0.956},
    )
    + _rows(
        "mae", "ST-MEM", "independent evaluation of ST-MEM (Na et al. 2024)", "linear",
        {"all_statements": 0.908, "superdiagnostic": 0.896, "form": 0.889, "rhythm": 0.951},
    )
    + _rows("simclr", "SimCLR", _MEHARI, "finetune", {"all_statements": 0.927})
    + _rows("simclr", "SimCLR", _MEHARI, "linear", {"all_statements": 0.883})
    + _rows("byol", "BYOL", _MEHARI, "finetune", {"all_statements": 0.929})
    + _rows("byol", "BYOL", _MEHARI, "linear", {"all_statements": 0.878})
    + _rows(
        "supervised", "xresnet1d101 (supervised)", _STRODTHOFF, "finetune",
        {"all_statements": 0.925, "superdiagnostic": 0.928, "form": 0.896, "rhythm": 0.957},
        "trained from scratch on the task",
    )
    + _rows(
        "supervised", "inception1d (supervised)", _STRODTHOFF, "finetune",
        {"all_statements": 0.925, "superdiagnostic": 0.921, "form": 0.899, "rhythm": 0.953},
        "trained from scratch on the task",
    )
)  # fmt: skip


def published_frame() -> pd.DataFrame:
    """One row per published number: method, label, task, protocol, auroc, source, note."""
    return pd.DataFrame([asdict(r) for r in PUBLISHED])
