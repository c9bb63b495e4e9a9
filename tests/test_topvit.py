"""TopViT: attention products against the maths, the transformers integration, and the image processor."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from karyohf.models import (  # importing karyohf.models registers TopViT with the Auto classes
    TopViTConfig,
    TopViTForImageClassification,
    TopViTImageProcessor,
    TopViTModel,
    center_on_canvas,
)
from karyohf.models.topvit import modeling_topvit as topvit


torch.set_num_threads(1)

# Non-square grids, odd and even sides, single rows and columns: a square grid would hide an H/W swap.
GRIDS = [(3, 5), (4, 2), (1, 7), (6, 1)]
HEADS, FEATURES, VALUE_DIM = 2, 3, 4


def random_problem(grid, dtype=torch.float64, seed=0):
    """Positive features, values and an asymmetric log-mask f (a symmetric one hides a flipped offset sign)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = grid[0] * grid[1]
    query = torch.rand(2, HEADS, tokens, FEATURES, generator=generator, dtype=torch.float64) + 0.1
    key = torch.rand(2, HEADS, tokens, FEATURES, generator=generator, dtype=torch.float64) + 0.1
    value = torch.randn(2, HEADS, tokens, VALUE_DIM, generator=generator, dtype=torch.float64)
    log_mask = torch.randn(HEADS, 2 * grid[0] - 1, 2 * grid[1] - 1, generator=generator, dtype=torch.float64)
    return [tensor.to(dtype) for tensor in (query, key, value, log_mask)]


def grid_of(log_mask):
    return (log_mask.shape[-2] + 1) // 2, (log_mask.shape[-1] + 1) // 2


def explicit_product(query, key, value, log_mask):
    grid = grid_of(log_mask)
    mask = topvit.toeplitz_mask(log_mask, topvit.toeplitz_offset_index(grid))
    return topvit.explicit_masked_linear_attention(query, key, value, mask)


def fft_product(query, key, value, log_mask):
    grid = grid_of(log_mask)
    return topvit.fft_masked_linear_attention(query, key, value, topvit.toeplitz_mask_spectrum(log_mask), grid)


PRODUCTS = {"explicit": explicit_product, "fft": fft_product}


def tiny_config(**overrides):
    settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return TopViTConfig(**{"image_size": (32, 16), "patch_size": 4, **settings, **overrides})


def randomise_log_masks(model):
    """Give every Toeplitz table asymmetric non-zero values, so that save/load would notice a lost or flipped f."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, topvit.TopViTToeplitzMask):
                module.log_mask.normal_()


# --- exactness of the masked products ----------------------------------------------------------------------------


def test_dense_reference_matches_brute_force_sum():
    query, key, value, log_mask = random_problem((2, 3))
    rows, cols = 2, 3
    expected = torch.zeros_like(value)
    for i in range(rows * cols):
        weights = []
        for j in range(rows * cols):
            offset = (i // cols - j // cols, i % cols - j % cols)
            mask = torch.exp(log_mask[:, offset[0] + rows - 1, offset[1] + cols - 1])[None, :]
            weights.append(mask * (query[:, :, i] * key[:, :, j]).sum(-1))
        weights = torch.stack(weights, dim=-1)
        expected[:, :, i] = (weights[..., None] * value).sum(-2) / weights.sum(-1, keepdim=True)
    actual = topvit.dense_masked_linear_attention(query, key, value, log_mask)
    assert (actual - expected).abs().max() < 1e-12


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("product", PRODUCTS)
def test_products_match_definition_in_float64(grid, product):
    query, key, value, log_mask = random_problem(grid)
    reference = topvit.dense_masked_linear_attention(query, key, value, log_mask)
    assert (PRODUCTS[product](query, key, value, log_mask) - reference).abs().max() <= 1e-10


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("product", PRODUCTS)
def test_float32_products_match_float64_reference(grid, product):
    query, key, value, log_mask = random_problem(grid)
    reference = topvit.dense_masked_linear_attention(query, key, value, log_mask)
    actual = PRODUCTS[product](*random_problem(grid, dtype=torch.float32)).double()
    assert (actual - reference).abs().max() <= 1e-4 * value.abs().max()


@pytest.mark.parametrize("grid", GRIDS)
def test_fft_without_padding_is_caught(grid, monkeypatch):
    """FFT length P = H, Q = W turns the mask into one on a torus: the comparison must fail."""
    query, key, value, log_mask = random_problem(grid)
    rows, cols = grid
    torus_kernel = torch.zeros(HEADS, rows, cols, dtype=log_mask.dtype)
    for row_offset in range(-(rows - 1), rows):
        for col_offset in range(-(cols - 1), cols):
            torus_kernel[:, row_offset % rows, col_offset % cols] = log_mask[
                :, row_offset + rows - 1, col_offset + cols - 1
            ].exp()
    monkeypatch.setattr(topvit, "toeplitz_fft_size", lambda grid_size: grid_size)
    wrong = topvit.fft_masked_linear_attention(query, key, value, torch.fft.rfft2(torus_kernel), grid)
    reference = topvit.dense_masked_linear_attention(query, key, value, log_mask)
    assert (wrong - reference).abs().max() > 1e-3


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("product", PRODUCTS)
def test_flipped_offset_sign_is_caught(grid, product):
    """Using g(r_j - r_i) instead of g(r_i - r_j) (a flipped table) must fail the comparison."""
    query, key, value, log_mask = random_problem(grid)
    reference = topvit.dense_masked_linear_attention(query, key, value, log_mask)
    wrong = PRODUCTS[product](query, key, value, log_mask.flip(-2, -1))
    assert (wrong - reference).abs().max() > 1e-3


@pytest.mark.parametrize("product", PRODUCTS)
def test_zero_log_mask_is_the_plain_performer(product):
    query, key, value, _ = random_problem((3, 5))
    zeros = torch.zeros(HEADS, 5, 9, dtype=torch.float64)
    performer = topvit.linear_attention(query, key, value)
    assert (PRODUCTS[product](query, key, value, zeros) - performer).abs().max() <= 1e-12


@pytest.mark.parametrize("product", PRODUCTS)
def test_gradcheck_wrt_query_key_value_and_log_mask(product):
    inputs = [tensor[:1].requires_grad_() for tensor in random_problem((3, 2))[:3]]
    log_mask = random_problem((3, 2))[3].requires_grad_()
    assert torch.autograd.gradcheck(PRODUCTS[product], (*inputs, log_mask))


def test_fft_batch_slicing_is_exact(monkeypatch):
    query, key, value, log_mask = random_problem((3, 5))
    whole = fft_product(query, key, value, log_mask)
    monkeypatch.setattr(topvit, "FFT_SLICE_BYTES", 1)  # one (batch, head) pair per slice
    assert torch.equal(fft_product(query, key, value, log_mask), whole)


def test_orthogonal_random_features_have_orthogonal_blocks():
    torch.manual_seed(0)
    weights = topvit.orthogonal_random_features(10, 4)
    assert weights.shape == (10, 4)
    directions = weights / weights.norm(dim=1, keepdim=True)
    assert torch.allclose(directions[:4] @ directions[:4].T, torch.eye(4), atol=1e-5)


# --- model behaviour ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["explicit", "fft"])
def test_model_products_agree_and_auto_picks_explicit_on_small_grids(product):
    torch.manual_seed(0)
    model = TopViTForImageClassification(tiny_config(toeplitz_product="explicit")).eval()
    randomise_log_masks(model)
    pixels = torch.randn(2, 1, 32, 16)
    with torch.no_grad():
        explicit_logits = model(pixels).logits
        for module in model.modules():
            if isinstance(module, topvit.TopViTToeplitzMask):
                module.product = product
        assert torch.allclose(model(pixels).logits, explicit_logits, atol=1e-5)
    auto = TopViTModel(tiny_config(toeplitz_product="auto"))
    assert auto.layers[0].attention.toeplitz_mask.product == "explicit"


def test_fresh_topvit_model_is_the_performer_model():
    torch.manual_seed(0)
    masked = TopViTForImageClassification(tiny_config()).eval()
    performer = TopViTForImageClassification(tiny_config(attention_type="performer")).eval()
    missing, unexpected = performer.load_state_dict(masked.state_dict(), strict=False)
    assert not missing and unexpected and all(key.endswith("toeplitz_mask.log_mask") for key in unexpected)
    pixels = torch.randn(2, 1, 32, 16)
    with torch.no_grad():
        assert torch.allclose(masked(pixels).logits, performer(pixels).logits, atol=1e-6)


def test_eval_is_deterministic_and_random_features_are_never_redrawn():
    torch.manual_seed(0)
    config = tiny_config(performer_feature_type="relu_random", performer_num_features=8, hidden_dropout_prob=0.1)
    model = TopViTForImageClassification(config).eval()
    feature_map = model.topvit.layers[0].attention.feature_map
    projection = feature_map.projection.clone()
    assert "topvit.layers.0.attention.feature_map.projection" in model.state_dict()
    pixels = torch.randn(3, 1, 32, 16)
    with torch.no_grad():
        first, second = model(pixels).logits, model(pixels).logits
    model.train()
    model(pixels).logits.sum().backward()
    model.eval()
    assert torch.equal(first, second)
    assert torch.equal(feature_map.projection, projection)


def test_inference_mask_cache_follows_weight_updates():
    torch.manual_seed(0)
    model = TopViTForImageClassification(tiny_config()).eval()
    pixels = torch.randn(2, 1, 32, 16)
    with torch.no_grad():
        before = model(pixels).logits
        randomise_log_masks(model)  # in-place: the cached masks must be rebuilt
        cached = model(pixels).logits
    assert not torch.allclose(before, cached)
    assert torch.allclose(model(pixels).logits, cached)  # with gradients on, nothing is cached


def test_log_mask_is_clamped_below():
    model = TopViTModel(tiny_config()).eval()
    attention = model.layers[0].attention
    pixels = torch.randn(1, 1, 32, 16)
    with torch.no_grad():
        attention.toeplitz_mask.log_mask.fill_(-8.0)
        at_bound = model(pixels).last_hidden_state
        attention.toeplitz_mask.log_mask.fill_(-50.0)
        assert torch.equal(model(pixels).last_hidden_state, at_bound)


def test_outputs_pooling_hidden_states_and_loss():
    torch.manual_seed(0)
    model = TopViTForImageClassification(tiny_config())
    assert model.config.id2label[0] == "1" and model.config.id2label[23] == "Y" and model.config.label2id["X"] == 22
    pixels = torch.randn(2, 1, 32, 16)
    output = model(pixels, labels=torch.tensor([0, 23]), output_hidden_states=True)
    assert output.logits.shape == (2, 24)
    assert output.loss.ndim == 0 and torch.isfinite(output.loss)
    assert len(output.hidden_states) == 3  # embeddings + 2 layers
    base = model.topvit(pixels)
    assert base.last_hidden_state.shape == (2, 32, 32)
    assert torch.allclose(base.pooler_output, base.last_hidden_state.mean(dim=1))
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(2, 1, 16, 16))


def test_softmax_eager_returns_attention_probabilities():
    model = TopViTForImageClassification(tiny_config(attention_type="softmax", attn_implementation="eager"))
    attentions = model(torch.randn(2, 1, 32, 16), output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[0].shape == (2, 2, 32, 32)
    assert torch.allclose(attentions[0].sum(-1), torch.ones(2, 2, 32))


def test_config_validation():
    invalid = [
        dict(image_size=(30, 16)),  # not a multiple of the patch
        dict(hidden_size=33),  # not a multiple of the heads
        dict(attention_type="cosine"),
        dict(patch_embedding="conv", patch_size=6, image_size=(36, 18)),  # the conv stem needs a power of two
        dict(toeplitz_product="fast"),
    ]
    for bad in invalid:
        with pytest.raises(StrictDataclassError):
            tiny_config(**bad)
    assert TopViTConfig(num_labels=2).id2label == {0: "LABEL_0", 1: "LABEL_1"}


def test_tiny_model_learns_vertical_versus_horizontal_bars():
    torch.manual_seed(0)
    images = torch.full((32, 1, 32, 16), -0.5)
    labels = torch.arange(32) % 2
    for index in range(32):
        offset = index // 2 % 8
        if labels[index]:
            images[index, 0, 4 + offset * 3, 2:14] = 4.0  # horizontal bar
        else:
            images[index, 0, 4:28, 2 + offset] = 4.0  # vertical bar
    model = TopViTForImageClassification(tiny_config(patch_size=8, num_labels=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(images, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * losses[0]


# --- saving and loading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        dict(attention_type="softmax"),
        dict(attention_type="performer", performer_feature_type="relu_random"),
        dict(attention_type="topvit", patch_embedding="linear"),
    ],
    ids=["softmax", "performer", "topvit"],
)
def test_save_and_load_give_identical_logits(tmp_path, overrides):
    torch.manual_seed(0)
    model = TopViTForImageClassification(tiny_config(**overrides)).eval()
    randomise_log_masks(model)
    pixels = torch.randn(2, 1, 32, 16)
    with torch.no_grad():
        expected = model(pixels).logits
    model.save_pretrained(tmp_path)
    loaded = TopViTForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(pixels).logits, expected)
    saved, reloaded = model.config.to_dict(), loaded.config.to_dict()
    assert saved.pop("_name_or_path") == "" and reloaded.pop("_name_or_path") == str(tmp_path)
    assert reloaded == saved


def test_auto_classes_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TopViTForImageClassification(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    TopViTImageProcessor(size={"height": 32, "width": 16}).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    assert isinstance(AutoConfig.from_pretrained(tmp_path), TopViTConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), TopViTModel)
    classifier = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(classifier, TopViTForImageClassification)
    processor = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    assert isinstance(processor, TopViTImageProcessor) and processor.size == {"height": 32, "width": 16}
    pixels = processor(np.full((60, 12), 40, dtype=np.uint8), return_tensors="pt").pixel_values
    with torch.no_grad():
        assert torch.equal(classifier.eval()(pixels).logits, model(pixels).logits)


def test_trust_remote_code_loads_without_karyohf(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "checkpoint"
    model = TopViTForImageClassification(tiny_config(performer_feature_type="relu_random")).eval()
    randomise_log_masks(model)
    model.save_pretrained(checkpoint)
    TopViTImageProcessor(size={"height": 32, "width": 16}).save_pretrained(checkpoint)
    crop = np.full((70, 14), 30, dtype=np.uint8)
    np.save(tmp_path / "crop.npy", crop)
    processor = TopViTImageProcessor(size={"height": 32, "width": 16})
    with torch.no_grad():
        torch.save(model(processor(crop, return_tensors="pt").pixel_values).logits, tmp_path / "expected.pt")
    script = textwrap.dedent(
        """
        import sys
        sys.modules["karyohf"] = None  # the repo is installed editable: make any karyohf import fail
        import numpy as np, torch
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained("checkpoint", trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained("checkpoint", trust_remote_code=True, backend="pil")
        AutoModel.from_pretrained("checkpoint", trust_remote_code=True)
        with torch.no_grad():
            logits = model(processor(np.load("crop.npy"), return_tensors="pt").pixel_values).logits
        # Another process may pick other float kernels: allow last-bit differences only.
        assert torch.allclose(logits, torch.load("expected.pt"), rtol=0, atol=1e-6)
        assert not [name for name in sys.modules if name.startswith("karyohf") and sys.modules[name] is not None]
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        print("remote code ok")
        """
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and "remote code ok" in result.stdout, result.stderr[-3000:]


# --- image processor ---------------------------------------------------------------------------------------------


def dark_extent(canvas, threshold=128):
    rows = np.flatnonzero((canvas < threshold).any(axis=1))
    cols = np.flatnonzero((canvas < threshold).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, rows[0], cols[0]


def test_center_on_canvas_keeps_scale():
    canvas = center_on_canvas(np.zeros((50, 10), dtype=np.uint8))
    assert canvas.shape == (199, 99) and canvas.dtype == np.uint8
    assert dark_extent(canvas) == (50, 10, (199 - 50) // 2, (99 - 10) // 2)
    assert canvas.min() == 0 and canvas.max() == 255


def test_center_on_canvas_shrinks_only_oversized_crops_keeping_aspect():
    rows, cols, _, _ = dark_extent(center_on_canvas(np.zeros((300, 60), dtype=np.uint8)))
    assert rows == 199 and abs(cols - round(60 * 199 / 300)) <= 1


def test_processor_output_and_scale_cue():
    processor = TopViTImageProcessor()
    short, long = np.full((40, 20), 20, np.uint8), np.full((120, 20), 20, np.uint8)
    pixels = processor([short, long], return_tensors="pt").pixel_values
    assert pixels.shape == (2, 1, 128, 64) and pixels.dtype == torch.float32
    assert torch.isclose(pixels[0, 0, 0, 0], torch.tensor((0.0 - 0.1) / 0.2))  # white background -> ink 0
    bright_rows = (pixels[:, 0] > 1.0).any(dim=-1).sum(dim=-1)
    assert bright_rows[1] > 2.5 * bright_rows[0]  # the longer chromosome stays longer: no stretching to fit


def test_processor_accepts_pil_uint16_float_and_rgb_alike():
    from PIL import Image

    processor = TopViTImageProcessor(size={"height": 32, "width": 16})
    gray = np.full((199, 99), 255, np.uint8)
    gray[60:140, 40:60] = 30
    expected = processor(gray).pixel_values
    rgb = np.stack([gray] * 3, axis=-1)
    variants = [Image.fromarray(gray), gray.astype(np.uint16) * 257, gray / 255.0, rgb, Image.fromarray(rgb)]
    for variant in variants:
        assert np.allclose(processor(variant).pixel_values, expected, atol=1e-5)
    assert processor([gray, gray], return_tensors="np").pixel_values.shape == (2, 1, 32, 16)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 5), np.uint8), np.zeros((2, 3, 4, 5), np.uint8), np.zeros((4, 4), bool), "crop.png", [], None],
    ids=["empty", "4d", "bool", "string", "no-images", "none"],
)
def test_processor_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        TopViTImageProcessor()(bad)


def test_processor_save_and_load(tmp_path):
    processor = TopViTImageProcessor(canvas_size=(150, 80), size={"height": 64, "width": 32}, image_mean=0.2)
    processor.save_pretrained(tmp_path)
    loaded = TopViTImageProcessor.from_pretrained(tmp_path)
    assert (loaded.canvas_size, loaded.size) == ((150, 80), {"height": 64, "width": 32})
    assert (loaded.image_mean, loaded.image_std) == (0.2, 0.2)
    crop = np.full((30, 10), 0, np.uint8)
    assert np.array_equal(loaded(crop).pixel_values, processor(crop).pixel_values)


def test_test_time_flips_average_the_mirror_views_in_eval_only():
    torch.manual_seed(0)
    config = TopViTConfig(image_size=(32, 16), patch_size=8, hidden_size=16, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=16, test_time_flips=("both",))
    model = TopViTForImageClassification(config).eval()
    pixels = torch.randn(3, 1, 32, 16)
    plain = copy.deepcopy(model)
    plain.config.test_time_flips = ()
    with torch.no_grad():
        expected = (plain(pixels).logits.log_softmax(-1) + plain(pixels.flip(-2, -1)).logits.log_softmax(-1)) / 2
        averaged = model(pixels, output_hidden_states=True)
        torch.testing.assert_close(averaged.logits, expected)
        # The set of views is the same for a half-turned crop: the prediction cannot depend on which way up it is.
        torch.testing.assert_close(model(pixels.flip(-2, -1)).logits, averaged.logits)
        assert averaged.hidden_states[-1].shape[0] == 3  # outputs of the images as given
        model.train(), plain.train()
        torch.testing.assert_close(model(pixels).logits, plain(pixels).logits)  # training sees one view


def test_test_time_flips_are_validated_and_saved(tmp_path):
    with pytest.raises(StrictDataclassError, match="test_time_flips"):
        TopViTConfig(test_time_flips=("diagonal",))
    config = TopViTConfig(image_size=(32, 16), patch_size=8, hidden_size=16, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=16, test_time_flips=["horizontal", "both"])
    TopViTForImageClassification(config).save_pretrained(tmp_path)
    assert TopViTConfig.from_pretrained(tmp_path).test_time_flips == ("horizontal", "both")
