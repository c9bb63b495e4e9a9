"""TopViT configuration: a small ViT for single-chromosome crops with a choice of attention kernel."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


# Index order is karyotype order, so argmax indices sort the way a karyogram is laid out.
KARYOTYPE_LABELS = tuple(str(number) for number in range(1, 23)) + ("X", "Y")


# The model type TopViT configs were saved under before karyohf 0.3. Such a config loads as `TopViTConfig` (karyohf
# also registers the name with AutoConfig) and is saved under the current `model_type`.
LEGACY_MODEL_TYPES = ("topvit",)

# The image axes each mirror flips; "both" is a half turn. (The CenterNet config has the same names: each model
# folder's code must stand alone for `trust_remote_code`.)
MIRROR_FLIPS = {"horizontal": (-1,), "vertical": (-2,), "both": (-2, -1)}


@strict
class TopViTConfig(PreTrainedConfig):
    r"""
    Configuration of [`TopViTModel`] and [`TopViTForImageClassification`].

    Invalid values raise `huggingface_hub.errors.StrictDataclassError` (its `__cause__` is the `ValueError` or
    `TypeError` with the message), like every transformers 5 config.

    Args:
        image_size (`tuple[int, int]`, defaults to `(128, 64)`):
            Input (height, width) in pixels; both must be multiples of `patch_size`.
        num_channels (`int`, defaults to 1):
            Input channels (grey-scale crops).
        patch_size (`int`, defaults to 8):
            Side of a square patch: the token grid is `(height // patch_size, width // patch_size)`.
        patch_embedding (`"conv"` or `"linear"`, defaults to `"conv"`):
            `"conv"`: a stem of stride-2 3x3 conv + BatchNorm + GELU layers reaching stride `patch_size` (a power of
            two), then a 1x1 projection; early convolutions make ViTs far more data-efficient. `"linear"`: the classic
            patchify projection.
        conv_stem_blocks (`int`, defaults to 0):
            Residual 3x3 blocks after each stride-2 convolution of the `"conv"` stem (0: the plain stem). With one or
            more the model is a hybrid ViT: convolutions learn the local banding, attention relates the patches.
        hidden_size (`int`, defaults to 128):
            Token width.
        num_hidden_layers (`int`, defaults to 6):
            Number of pre-LayerNorm encoder blocks.
        num_attention_heads (`int`, defaults to 4):
            Heads per attention layer; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 256):
            Width of the MLP inside each block.
        hidden_dropout_prob (`float`, defaults to 0.0):
            Dropout on embeddings and on each residual branch.
        attention_probs_dropout_prob (`float`, defaults to 0.0):
            Dropout on softmax attention probabilities (the linear kernels never form that matrix).
        layer_norm_eps (`float`, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the truncated normal used for weights and position embeddings.
        attention_type (`"softmax"`, `"performer"` or `"topvit"`, defaults to `"topvit"`):
            `"softmax"`: exact dot-product attention (SDPA by default). `"performer"`: linear attention with ReLU
            features. `"topvit"`: that linear attention with a learnable block-Toeplitz mask over 2-D patch offsets.
        performer_feature_type (`"relu"` or `"relu_random"`, defaults to `"relu"`):
            `"relu"`: phi(q) = ReLU(q / sqrt(d)) + eps, phi(k) = ReLU(k) + eps, as in the public TopViT code.
            `"relu_random"`: phi(x) = ReLU(W x / sqrt(m)) + eps with W made of Haar-orthogonal blocks with chi(d) row
            norms, drawn once and saved with the weights.
        performer_num_features (`int`, defaults to 64):
            Number of random features m (used by `"relu_random"` only).
        performer_epsilon (`float`, defaults to 1e-6):
            Floor added to the features so that every attention normaliser is positive.
        toeplitz_min_log_mask (`float`, defaults to -8.0):
            Lower bound on the learnable log-mask f; keeps float32 products accurate.
        toeplitz_product (`"auto"`, `"explicit"` or `"fft"`, defaults to `"auto"`):
            How the masked product is computed: `"explicit"` builds the N x N mask (O(N^2)), `"fft"` applies it as a
            2-D linear convolution (O(N log N)), `"auto"` picks by the number of tokens.
        num_labels (`int`, defaults to 24):
            With 24 labels `id2label` defaults to the karyotype classes `"1"`..`"22"`, `"X"`, `"Y"`.
        test_time_flips (`tuple[str, ...]`, defaults to `()`):
            Mirror images (`"horizontal"`, `"vertical"`, `"both"` = a half turn) that
            [`TopViTForImageClassification`] also classifies in eval mode, averaging the log-probabilities. A crop
            may show its chromosome either way up, and training turns and mirrors crops, so each view is as valid.
    """

    # Prefixed like the CenterNet's "karyohf_centernet": a bare name could clash with a model type transformers or
    # another library registers (AutoConfig refuses a second registration of a name it has).
    model_type = "karyohf_topvit"

    image_size: tuple[int, int] | list[int] = (128, 64)
    num_channels: int = 1
    patch_size: int = 8
    patch_embedding: Literal["linear", "conv"] = "conv"
    conv_stem_blocks: int = 0
    hidden_size: int = 128
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 256
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    attention_type: Literal["softmax", "performer", "topvit"] = "topvit"
    performer_feature_type: Literal["relu", "relu_random"] = "relu"
    performer_num_features: int = 64
    performer_epsilon: float = 1e-6
    toeplitz_min_log_mask: float | int = -8.0
    toeplitz_product: Literal["auto", "explicit", "fft"] = "auto"
    test_time_flips: tuple[str, ...] | list[str] = ()

    def __post_init__(self, **kwargs):
        if kwargs.get("model_type") in LEGACY_MODEL_TYPES:  # an old config.json: the class's model_type stands
            del kwargs["model_type"]
        # JSON turns tuples into lists; keep one canonical form so configs compare equal after a round trip.
        self.image_size = tuple(self.image_size)
        self.test_time_flips = tuple(self.test_time_flips)
        # The model exists to name chromosomes: unless told otherwise, its 24 outputs are the karyotype classes.
        if self.id2label is None and kwargs.get("num_labels", len(KARYOTYPE_LABELS)) == len(KARYOTYPE_LABELS):
            self.id2label = dict(enumerate(KARYOTYPE_LABELS))
            self.label2id = {label: index for index, label in enumerate(KARYOTYPE_LABELS)}
        super().__post_init__(**kwargs)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """As `PreTrainedConfig.get_config_dict`, with a legacy `model_type` read as the current one (so loading an
        old checkpoint does not warn of a different model type)."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") in LEGACY_MODEL_TYPES:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch-grid (rows, columns) the encoder attends over."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    def validate_architecture(self):
        """Called by `@strict` after `__init__`: reject geometries the model cannot be built with."""
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"`image_size` must be two positive ints (height, width), got {self.image_size}.")
        positive = (
            "num_channels",
            "patch_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "performer_num_features",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if any(side % self.patch_size for side in self.image_size):
            raise ValueError(f"`image_size` {self.image_size} must be divisible by `patch_size` ({self.patch_size}).")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        unknown = [flip for flip in self.test_time_flips if flip not in MIRROR_FLIPS]
        if unknown:
            raise ValueError(f"`test_time_flips` must be among {tuple(MIRROR_FLIPS)}, got {unknown}.")
        if self.conv_stem_blocks < 0:
            raise ValueError(f"`conv_stem_blocks` must be >= 0, got {self.conv_stem_blocks}.")
        if self.patch_embedding == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(
                f'`patch_embedding="conv"` halves the resolution per layer, so `patch_size` must be a power of two '
                f">= 2, got {self.patch_size}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1), got {getattr(self, name)}.")
        if self.performer_epsilon <= 0.0:
            raise ValueError(f"`performer_epsilon` must be positive, got {self.performer_epsilon}.")


__all__ = ["TopViTConfig"]
