"""TopViT: a small ViT for chromosome crops whose attention is softmax, a ReLU Performer, or the Performer with a
learnable block-Toeplitz mask over 2-D patch offsets (TopViT, Choromanski et al. 2022).

Tokens are the patch grid flattened row-major: token n = a * W + b for grid row a and column b.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_topvit import MIRROR_FLIPS, TopViTConfig


# "auto" product: explicit up to this many tokens, FFT above. The explicit product is faster on a CPU at every size
# this model meets (the FFT form's m*(d+1) convolutions per head dominate; see benchmarks/attention.py), but its
# B*h*N^2 scores stop fitting in memory beyond a few thousand tokens.
EXPLICIT_PRODUCT_MAX_TOKENS = 4096
# The FFT path holds the spectra of all m*(d+1) channels of a (batch, head) pair: work in slices of about this size.
FFT_SLICE_BYTES = 24 * 2**20


# ---------------------------------------------------------------------------------------------------------------
# Attention kernels. Plain functions of (features, values, mask) so that tests can hold them against the maths.
# Shapes: query/key features (..., N, m), values (..., N, d), log-mask table f (heads, 2H-1, 2W-1) indexed by the
# offset r_i - r_j of query i from key j, shifted by (H-1, W-1).
# ---------------------------------------------------------------------------------------------------------------


def _append_ones(value: torch.Tensor) -> torch.Tensor:
    """[V, 1]: one product then yields the numerator (first d columns) and the normaliser (last column)."""
    return torch.cat([value, value.new_ones(*value.shape[:-1], 1)], dim=-1)


def _normalise(numerator_and_normaliser: torch.Tensor) -> torch.Tensor:
    return numerator_and_normaliser[..., :-1] / numerator_and_normaliser[..., -1:]


def _grid_of(log_mask: torch.Tensor) -> tuple[int, int]:
    """(H, W) of the patch grid a (heads, 2H-1, 2W-1) offset table belongs to."""
    return (log_mask.shape[-2] + 1) // 2, (log_mask.shape[-1] + 1) // 2


def linear_attention(query_features: torch.Tensor, key_features: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Unmasked kernelised attention Out = D^-1 Q'(K'^T [V, 1]) in O(N m d)."""
    context = key_features.transpose(-1, -2) @ _append_ones(value)
    return _normalise(query_features @ context)


def dense_masked_linear_attention(
    query_features: torch.Tensor, key_features: torch.Tensor, value: torch.Tensor, log_mask: torch.Tensor
) -> torch.Tensor:
    """Reference definition, O(N^2): Out = D^-1 (M . Q'K'^T) V, D = diag((M . Q'K'^T) 1), M_ij = exp f(r_i - r_j)."""
    rows, cols = _grid_of(log_mask)
    positions = torch.cartesian_prod(torch.arange(rows), torch.arange(cols)).reshape(-1, 2).to(log_mask.device)
    offsets = positions[:, None, :] - positions[None, :, :]
    mask = torch.exp(log_mask[:, offsets[..., 0] + rows - 1, offsets[..., 1] + cols - 1])
    scores = mask * (query_features @ key_features.transpose(-1, -2))
    return (scores @ value) / scores.sum(dim=-1, keepdim=True)


def toeplitz_offset_index(grid_size: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(N, N) flat index into the flattened (2H-1, 2W-1) table of the offset r_i - r_j (sign matters)."""
    rows, cols = grid_size
    row = torch.arange(rows, device=device).repeat_interleave(cols)
    col = torch.arange(cols, device=device).repeat(rows)
    row_offset = row[:, None] - row[None, :] + rows - 1
    col_offset = col[:, None] - col[None, :] + cols - 1
    return row_offset * (2 * cols - 1) + col_offset


def toeplitz_mask(log_mask: torch.Tensor, offset_index: torch.Tensor) -> torch.Tensor:
    """The (heads, N, N) block-Toeplitz mask M: exponentiate the small table, then gather."""
    return log_mask.flatten(1).exp()[:, offset_index]


def explicit_masked_linear_attention(
    query_features: torch.Tensor, key_features: torch.Tensor, value: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """O(N^2 (m + d)) product with a prebuilt (heads, N, N) mask."""
    scores = query_features @ key_features.transpose(-1, -2)
    scores *= mask  # in place: at 1,250 tokens the scores of 46 crops take 1.2 GB, and a second copy doubles the time
    return _normalise(scores @ _append_ones(value))


def toeplitz_fft_size(grid_size: tuple[int, int]) -> tuple[int, int]:
    """FFT lengths P >= 2H-1, Q >= 2W-1, so that the circular convolution never wraps onto the grid (a torus mask
    otherwise); even lengths keep the real FFT fast."""
    return 2 * grid_size[0], 2 * grid_size[1]


def toeplitz_mask_spectrum(log_mask: torch.Tensor) -> torch.Tensor:
    """rfft2 of g = exp(f) laid out for circular convolution: offset (0, 0) at index (0, 0), negative offsets wrapped
    to the end of each axis, zeros in between. Shape (heads, P, Q // 2 + 1)."""
    rows, cols = _grid_of(log_mask)
    fft_rows, fft_cols = toeplitz_fft_size((rows, cols))
    kernel = nn.functional.pad(log_mask.exp(), (0, fft_cols - (2 * cols - 1), 0, fft_rows - (2 * rows - 1)))
    kernel = torch.roll(kernel, shifts=(-(rows - 1), -(cols - 1)), dims=(-2, -1))
    return torch.fft.rfft2(kernel)


def fft_masked_linear_attention(
    query_features: torch.Tensor,
    key_features: torch.Tensor,
    value: torch.Tensor,
    mask_spectrum: torch.Tensor,
    grid_size: tuple[int, int],
) -> torch.Tensor:
    """O(m (d+1) N log N) product, never forming M: [(M . Q'K'^T)[V,1]]_ie = sum_r Q'_ir [M (K'_:r . [V,1]_:e)]_i,
    and M x is the 2-D linear convolution of the H x W image x with g, done by FFT with zero padding.

    The leading dims of the inputs must end with heads, matching `mask_spectrum` (heads, P, Q // 2 + 1)."""
    *leading, tokens, num_features = key_features.shape
    fft_rows, fft_cols = toeplitz_fft_size(grid_size)
    # Flatten to one (batch, head) pair per item, each with its own mask spectrum, so the work can be sliced finely.
    mask_spectrum = mask_spectrum.expand(*leading, *mask_spectrum.shape[-2:]).reshape(-1, *mask_spectrum.shape[-2:])
    query_features, key_features, value = (x.reshape(-1, *x.shape[-2:]) for x in (query_features, key_features, value))
    # Slices small enough that the largest temporary (all m*(d+1) spectra of a slice) stays cache-friendly and under
    # glibc's 32 MB mmap threshold: bigger ones are page-faulted in afresh for every slice, costing more than the FFT.
    spectra_bytes = num_features * (value.shape[-1] + 1) * fft_rows * (fft_cols // 2 + 1) * 2 * value.element_size()
    pairs_per_slice = max(1, FFT_SLICE_BYTES // spectra_bytes)
    slices = zip(*(x.split(pairs_per_slice) for x in (query_features, key_features, value, mask_spectrum)))
    output = torch.cat([_fft_masked_product(*inputs, grid_size) for inputs in slices])
    return output.reshape(*leading, tokens, -1)


def _fft_masked_product(
    query_features: torch.Tensor,
    key_features: torch.Tensor,
    value: torch.Tensor,
    mask_spectrum: torch.Tensor,
    grid_size: tuple[int, int],
) -> torch.Tensor:
    """`fft_masked_linear_attention` for (pairs, N, .) inputs and a (pairs, P, Q // 2 + 1) mask spectrum."""
    rows, cols = grid_size
    fft_size = toeplitz_fft_size(grid_size)
    value_and_ones = _append_ones(value)
    # Channel (r, e) is the image K'_:r * [V,1]_:e on the H x W grid, built directly in (pair, r, e, N) layout.
    channels = key_features.transpose(-1, -2).unsqueeze(-2) * value_and_ones.transpose(-1, -2).unsqueeze(-3)
    spectrum = torch.fft.rfft2(channels.reshape(len(channels), -1, rows, cols), s=fft_size)
    spectrum *= mask_spectrum.unsqueeze(-3)
    # Always pass s: a half spectrum does not tell irfft2 the original length (it would assume an even one).
    masked = torch.fft.irfft2(spectrum, s=fft_size)[..., :rows, :cols].reshape(channels.shape)
    return _normalise(torch.einsum("bnr,bren->bne", query_features, masked))


def orthogonal_random_features(num_features: int, head_dim: int) -> torch.Tensor:
    """W (m, d): stacked Haar-random orthogonal d x d blocks whose rows get chi(d) norms (those of Gaussian rows)."""
    blocks = []
    for _ in range(math.ceil(num_features / head_dim)):
        orthogonal, triangular = torch.linalg.qr(torch.randn(head_dim, head_dim))
        # Fixing the signs by diag(R) makes Q Haar-distributed rather than biased by the QR convention.
        blocks.append((orthogonal * torch.sign(torch.diagonal(triangular))).T)
    directions = torch.cat(blocks)[:num_features]
    return directions * torch.randn(num_features, head_dim).norm(dim=1, keepdim=True)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention in plain torch; the fallback of the transformers attention interface."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


# ---------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------


class TopViTResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip (a ResNet basic block): local band features before the tokens attend.

    With a few epochs on two CPU cores, a ViT learns local texture slowly; the hybrid ViT of Dosovitskiy et al.
    hands that job to convolutions, whose locality is the right prior for banding patterns.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.activation = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        residual = self.norm2(self.conv2(self.activation(self.norm1(self.conv1(features)))))
        return self.activation(features + residual)


class TopViTPatchEmbeddings(nn.Module):
    """Pixels -> (B, N, hidden) patch tokens, through a convolutional stem or a single patchify convolution."""

    def __init__(self, config: TopViTConfig):
        super().__init__()
        if config.patch_embedding == "conv":
            layers, channels = [], config.num_channels
            num_stages = config.patch_size.bit_length() - 1
            for stage in range(num_stages):
                # Widths double per stage and reach hidden_size at the last one.
                width = max(config.hidden_size >> (num_stages - 1 - stage), 1)
                layers += [
                    nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.GELU(),
                ]
                layers += [TopViTResidualBlock(width) for _ in range(config.conv_stem_blocks)]
                channels = width
            self.stem = nn.Sequential(*layers)
            self.projection = nn.Conv2d(channels, config.hidden_size, kernel_size=1)
        else:
            self.stem = nn.Identity()
            self.projection = nn.Conv2d(
                config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(self.stem(pixel_values)).flatten(2).transpose(1, 2)


class TopViTEmbeddings(nn.Module):
    """Patch tokens plus learned absolute position embeddings over the patch grid (no CLS token: pooling is GAP)."""

    def __init__(self, config: TopViTConfig):
        super().__init__()
        self.expected_shape = (config.num_channels, *config.image_size)
        self.patch_embeddings = TopViTPatchEmbeddings(config)
        num_patches = config.grid_size[0] * config.grid_size[1]
        self.position_embeddings = nn.Parameter(torch.zeros(1, num_patches, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # Position embeddings and the Toeplitz tables are tied to one grid: refuse other sizes instead of guessing.
        if tuple(pixel_values.shape[1:]) != self.expected_shape:
            raise ValueError(
                f"Expected pixel_values of shape (batch, {', '.join(map(str, self.expected_shape))}), "
                f"got {tuple(pixel_values.shape)}."
            )
        embeddings = self.patch_embeddings(pixel_values) + self.position_embeddings
        return self.dropout(embeddings)


class TopViTFeatureMap(nn.Module):
    """Positive features phi(q), phi(k) >= eps for the linear kernels (an arc-cosine kernel, not softmax)."""

    def __init__(self, config: TopViTConfig):
        super().__init__()
        head_dim = config.hidden_size // config.num_attention_heads
        self.epsilon = config.performer_epsilon
        self.query_scale = head_dim**-0.5
        if config.performer_feature_type == "relu_random":
            # Persistent: drawn once at initialisation and saved, so inference never changes between calls or loads.
            self.register_buffer("projection", torch.empty(config.performer_num_features, head_dim))
        else:
            self.projection = None

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.projection is None:
            # Public TopViT code: only the queries carry the 1/sqrt(d) temperature.
            query, key = query * self.query_scale, key
        else:
            scale = self.projection.shape[0] ** -0.5
            query, key = (query @ self.projection.T) * scale, (key @ self.projection.T) * scale
        return nn.functional.relu(query) + self.epsilon, nn.functional.relu(key) + self.epsilon


class TopViTToeplitzMask(nn.Module):
    """Learnable log-mask f per head over the (2H-1)(2W-1) patch offsets, applied inside the linear attention.

    f starts at 0 (M = 1: the plain Performer) and is clamped below at `toeplitz_min_log_mask`. At inference the
    derived mask (explicit) or its spectrum (FFT) is cached until f changes.
    """

    def __init__(self, config: TopViTConfig):
        super().__init__()
        self.grid_size = config.grid_size
        self.min_log_mask = float(config.toeplitz_min_log_mask)
        rows, cols = self.grid_size
        self.log_mask = nn.Parameter(torch.zeros(config.num_attention_heads, 2 * rows - 1, 2 * cols - 1))
        # Derived from the grid alone, hence not saved; `_init_weights` rebuilds it after a meta-device load.
        self.register_buffer("offset_index", toeplitz_offset_index(self.grid_size), persistent=False)
        num_tokens = rows * cols
        self.product = config.toeplitz_product
        if self.product == "auto":
            self.product = "explicit" if num_tokens <= EXPLICIT_PRODUCT_MAX_TOKENS else "fft"
        self._cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    def train(self, mode: bool = True):
        # Training changes f: drop cached masks rather than keep them alive.
        self._cache.clear()
        return super().train(mode)

    def _derived(self, name: str, build: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """build(clamped f); at inference (eval, no autograd) reuse it until f is modified, replaced or moved."""
        if self.training or torch.is_grad_enabled():
            return build(self.log_mask.clamp(min=self.min_log_mask))
        key = (self.log_mask.data_ptr(), self.log_mask._version, self.log_mask.dtype, self.log_mask.device)
        cached = self._cache.get(name)
        if cached is None or cached[0] != key:
            cached = self._cache[name] = (key, build(self.log_mask.clamp(min=self.min_log_mask)))
        return cached[1]

    def forward(self, query_features: torch.Tensor, key_features: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if self.product == "explicit":
            mask = self._derived("mask", lambda log_mask: toeplitz_mask(log_mask, self.offset_index))
            return explicit_masked_linear_attention(query_features, key_features, value, mask)
        mask_spectrum = self._derived("spectrum", toeplitz_mask_spectrum)
        return fft_masked_linear_attention(query_features, key_features, value, mask_spectrum, self.grid_size)


class TopViTAttention(nn.Module):
    """Multi-head self-attention over the patch tokens; `config.attention_type` picks the kernel."""

    def __init__(self, config: TopViTConfig):
        super().__init__()
        self.config = config
        self.attention_type = config.attention_type
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.feature_map = TopViTFeatureMap(config) if self.attention_type != "softmax" else None
        self.toeplitz_mask = TopViTToeplitzMask(config) if self.attention_type == "topvit" else None

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        if self.attention_type == "softmax":
            attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            attn_output, attn_weights = attention_interface(
                self,
                query,
                key,
                value,
                None,
                dropout=0.0 if not self.training else self.attention_dropout,
                scaling=self.scaling,
                **kwargs,
            )
        else:
            # The linear kernels never form an attention matrix, so there are no weights to report.
            query_features, key_features = self.feature_map(query, key)
            if self.toeplitz_mask is not None:
                attn_output = self.toeplitz_mask(query_features, key_features, value)
            else:
                attn_output = linear_attention(query_features, key_features, value)
            attn_output, attn_weights = attn_output.transpose(1, 2), None

        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights


class TopViTMLP(nn.Module):
    def __init__(self, config: TopViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class TopViTLayer(GradientCheckpointingLayer):
    """Pre-LayerNorm block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: TopViTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = TopViTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = TopViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        attn_output, _ = self.attention(self.layernorm_before(hidden_states), **kwargs)
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))


class TopViTPreTrainedModel(PreTrainedModel):
    config: TopViTConfig
    base_model_prefix = "topvit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["TopViTEmbeddings", "TopViTLayer"]
    _supports_sdpa = True
    _can_record_outputs = {"hidden_states": TopViTLayer, "attentions": TopViTAttention}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, TopViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, TopViTToeplitzMask):
            init.zeros_(module.log_mask)
            # from_pretrained builds on the meta device and leaves non-persistent buffers empty: rebuild it here.
            init.copy_(module.offset_index, toeplitz_offset_index(module.grid_size, module.offset_index.device))
        elif isinstance(module, TopViTFeatureMap) and module.projection is not None:
            # Skipped by `init.copy_` when the buffer was loaded from a checkpoint: features are never redrawn.
            init.copy_(module.projection, orthogonal_random_features(*module.projection.shape))

    def save_pretrained(self, save_directory, *args, **kwargs):
        # register_for_auto_class records only the saved class in `auto_map`: list both heads so that AutoModel and
        # AutoModelForImageClassification each resolve with trust_remote_code.
        if self.is_remote_code():
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": "modeling_topvit.TopViTModel",
                "AutoModelForImageClassification": "modeling_topvit.TopViTForImageClassification",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)


class TopViTModel(TopViTPreTrainedModel):
    """Backbone: embeddings, pre-LN encoder, final LayerNorm and global average pooling."""

    def __init__(self, config: TopViTConfig):
        super().__init__(config)
        self.embeddings = TopViTEmbeddings(config)
        self.layers = nn.ModuleList([TopViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Crops prepared by `TopViTImageProcessor`.

        Returns `last_hidden_state` (B, N, hidden) and `pooler_output` (B, hidden): the mean of the final tokens, the
        pre-logits embedding used for UMAP plots and de novo detection.
        """
        pixel_values = pixel_values.to(self.embeddings.position_embeddings.dtype)
        hidden_states = self.embeddings(pixel_values)
        for layer in self.layers:
            hidden_states = layer(hidden_states, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=sequence_output.mean(dim=1))


class TopViTForImageClassification(TopViTPreTrainedModel):
    """TopViT with a linear head on the pooled embedding (24 karyotype classes by default)."""

    def __init__(self, config: TopViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.topvit = TopViTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs
    ) -> ImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, num_labels)`; cross-entropy loss is returned when given.
        """
        outputs, logits = self.classify(pixel_values, **kwargs)
        loss = None
        if labels is not None:
            # Picked from the class name (ForImageClassification); kwargs carry e.g. num_items_in_batch.
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def classify(self, pixel_values: torch.Tensor, **kwargs) -> tuple[BaseModelOutputWithPooling, torch.Tensor]:
        """The backbone's outputs for the images as given, and the logits.

        In eval mode with `config.test_time_flips`, the mirror images go through the backbone in the same batch and
        the logits are the views' mean log-probabilities (their softmax is the views' normalised geometric mean).
        """
        flips = () if self.training else self.config.test_time_flips
        views = [pixel_values] + [pixel_values.flip(MIRROR_FLIPS[flip]) for flip in flips]
        outputs = self.topvit(torch.cat(views), **kwargs)
        logits = self.classifier(outputs.pooler_output)
        if not flips:
            return outputs, logits
        batch = pixel_values.shape[0]  # not len(): a symbolic size, so an ONNX export keeps the batch dynamic
        logits = logits.log_softmax(-1).unflatten(0, (len(views), batch)).mean(0)
        as_given = {key: value[:batch] if torch.is_tensor(value) else tuple(v[:batch] for v in value)
                    for key, value in outputs.items()}
        return BaseModelOutputWithPooling(**as_given), logits


__all__ = ["TopViTForImageClassification", "TopViTModel", "TopViTPreTrainedModel"]
