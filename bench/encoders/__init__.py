"""The shared encoder family (1-D ViT), position tables, mask samplers and token predictor.

Importing this package imports torch and timm: keep it out of the CLI's start-up path.
"""

from bench.encoders.masks import (
    cropa_mask,
    ecg_jepa_time_mask,
    gather_tokens,
    jepa_block_mask,
    lead_rows,
    mae_lead_mask,
    time_to_token_indices,
)
from bench.encoders.positions import sincos_1d, sincos_2d
from bench.encoders.predictor import TokenPredictor
from bench.encoders.vit import (
    ATTENTION_KERNELS,
    ENCODER_SIZES,
    POS_EMBEDS,
    TokenLayout,
    ViT1D,
    build_encoder,
    init_weights,
    predictor_defaults,
    resolve_attention,
    use_attention,
)

__all__ = [
    "ATTENTION_KERNELS",
    "ENCODER_SIZES",
    "POS_EMBEDS",
    "TokenLayout",
    "TokenPredictor",
    "ViT1D",
    "build_encoder",
    "cropa_mask",
    "ecg_jepa_time_mask",
    "gather_tokens",
    "init_weights",
    "jepa_block_mask",
    "lead_rows",
    "mae_lead_mask",
    "predictor_defaults",
    "resolve_attention",
    "sincos_1d",
    "sincos_2d",
    "time_to_token_indices",
    "use_attention",
]
