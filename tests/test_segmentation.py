"""Segmentation: the weight-free ThresholdSegmenter on synthetic scenes, and the SAM path with a tiny random SAM built here."""

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from karyohf.crops import CANVAS_SIZE, extract_chromosome
from karyohf.data import load_metaphases, split_metaphases
from karyohf.images import as_gray_uint8
from karyohf.segmentation import SamSegmenter, ThresholdSegmenter, segment_in_box
from tests.synthetic import banded_rod, metaphase_with

SIZE = (240, 200)  # metaphase_with's default field (width, height)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rod_masks(rods) -> np.ndarray:
    """Each rod's own pixels where it would lie in the scene, drawn alone."""
    return np.array([np.asarray(metaphase_with([rod], size=SIZE)[0]) < 200 for rod in rods])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def alone(image, box) -> np.ndarray:
    """segment_in_box's mask for one box, in image coordinates: what a box sees without its neighbours' boxes."""
    gray = np.asarray(image)
    x0, y0, x1, y1 = box
    mask = np.zeros(gray.shape, dtype=bool)
    mask[y0:y1, x0:x1] = segment_in_box(gray, (x0, y0, x1, y1))
    return mask


def ink_extent(crop: Image.Image) -> tuple[int, int]:
    rows, cols = np.nonzero(np.asarray(crop) < 200)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


# --- ThresholdSegmenter ---------------------------------------------------------------------------

TOUCHING = [(banded_rod(length=90), (60, 30), 35), (banded_rod(length=60), (90, 95), 0)]  # a rod's tip against a tilted one
CROSSING = [(banded_rod(length=80), (100, 40), 0), (banded_rod(length=80), (60, 80), 90)]
CROSSING_OBLIQUE = [(banded_rod(length=80), (100, 40), 30), (banded_rod(length=70), (80, 50), -40)]


def test_touching_chromosomes_are_separated():
    image, boxes = metaphase_with(TOUCHING, size=SIZE)
    truth = rod_masks(TOUCHING)
    assert not (truth[0] & truth[1]).any() and (ndimage.binary_dilation(truth[0], np.ones((3, 3))) & truth[1]).any()
    # The tilted rod's box holds the tip of the other, and thresholding that box alone keeps it.
    assert (alone(image, boxes[0]) & truth[1]).sum() > 0.1 * truth[1].sum()

    masks = ThresholdSegmenter()(image, boxes)
    assert masks.shape == (2, SIZE[1], SIZE[0]) and masks.dtype == bool
    for mine, other, mask in zip(truth, truth[::-1], masks):
        assert iou(mask, mine) > 0.9
        assert (mask & other).sum() <= 0.02 * other.sum()


@pytest.mark.parametrize("rods, min_iou", [(CROSSING, 0.95), (CROSSING_OBLIQUE, 0.85)], ids=["perpendicular", "oblique"])
def test_crossing_pixels_belong_to_both(rods, min_iou):
    image, boxes = metaphase_with(rods, size=SIZE)
    truth = rod_masks(rods)
    masks = ThresholdSegmenter()(image, boxes)
    assert iou(masks[0], truth[0]) > min_iou and iou(masks[1], truth[1]) > min_iou
    crossing = truth[0] & truth[1]
    assert (masks[0] & masks[1] & crossing).sum() >= 0.9 * crossing.sum()


def test_nucleus_and_debris_are_removed():
    rods = [(banded_rod(length=80), (60, 40), 30)]
    image, (box,) = metaphase_with(rods, size=SIZE)
    draw = ImageDraw.Draw(image)
    draw.ellipse([110, 60, 190, 140], fill=120)  # a nucleus touching the rod, reaching into its box
    x0, y0, x1, y1 = box
    draw.ellipse([x0 + 2, y1 - 8, x0 + 5, y1 - 5], fill=60)  # a speck of debris inside the box
    nucleus = np.hypot(*np.mgrid[: SIZE[1], : SIZE[0]] - np.array([100, 150])[:, None, None]) <= 41
    rod = rod_masks(rods)[0]
    assert (alone(image, box) & nucleus).sum() > 100  # the box alone keeps the nucleus it touches

    masks = ThresholdSegmenter()(image, [box, (108, 58, 192, 142)])
    assert iou(masks[0], rod) > 0.85 and not (masks[0] & nucleus).any()
    assert not (masks[1] & nucleus).any()  # a box around the nucleus keeps nothing of it


def test_masks_feed_extract_chromosome_as_upright_crops():
    image, boxes = metaphase_with(CROSSING_OBLIQUE, size=SIZE)
    masks = ThresholdSegmenter()(image, boxes)
    for box, mask, length in zip(boxes, masks, (80, 70)):
        crop = extract_chromosome(image, box, mask=mask)
        height, width = ink_extent(crop)
        assert crop.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
        assert abs(height - length) <= 6 and width <= 18


def test_any_image_format_gives_the_same_masks():
    image, boxes = metaphase_with(TOUCHING, size=SIZE)
    gray = np.asarray(image)
    expected = ThresholdSegmenter()(gray, boxes)
    assert np.array_equal(ThresholdSegmenter()(image.convert("RGB"), boxes), expected)
    assert np.array_equal(ThresholdSegmenter()(gray.astype(np.uint16) * 257, boxes), expected)
    assert np.array_equal(ThresholdSegmenter()(gray, np.asarray(boxes, dtype=np.float32)), expected)


def test_no_boxes_give_no_masks():
    assert ThresholdSegmenter()(np.full((50, 60), 200, np.uint8), []).shape == (0, 50, 60)


@pytest.mark.parametrize("segmenter", ["threshold", "sam"])
@pytest.mark.parametrize(
    "boxes, message",
    [
        ([(0, 0, 10)], r"\(N, 4\)"),
        ((0, 0, 10, 10), r"\(N, 4\)"),
        ([(0, 0, np.nan, 10)], "non-finite"),
        ([(10, 10, 20, 20), (500, 500, 600, 600)], "box 1 .* outside"),
        ([(20, 20, 10, 30)], "box 0 .* empty"),
    ],
)
def test_bad_boxes_are_named(segmenter, boxes, message):
    segment = ThresholdSegmenter() if segmenter == "threshold" else SamSegmenter(tiny_sam())
    with pytest.raises(ValueError, match=message):
        segment(np.full((100, 120), 200, np.uint8), boxes)


def test_real_metaphase_masks(real_data_root):
    example = split_metaphases(load_metaphases(real_data_root))["validation"][0]
    gray = as_gray_uint8(example["image"])
    boxes = np.asarray(example["boxes"])
    masks = ThresholdSegmenter()(gray, boxes)
    assert masks.shape == (len(boxes), *gray.shape)
    fill = []
    for mask, (x0, y0), (x1, y1) in zip(masks, np.floor(boxes[:, :2]).astype(int), np.ceil(boxes[:, 2:]).astype(int)):
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # every mask lies inside its box
        fill.append(mask.sum() / ((x1 - x0) * (y1 - y0)))
    assert np.mean(np.array(fill) > 0.05) >= 0.95  # nearly every box gets a chromosome-sized mask
    assert 0.2 < np.median(fill) < 0.9
    crop = extract_chromosome(gray, boxes[0], mask=masks[0])
    assert crop.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])


# --- SamSegmenter ---------------------------------------------------------------------------------


def tiny_sam(seed: int = 0, embed_dim: int = 32, image_size: int = 64) -> Sam:
    """A random SAM with the real architecture at toy size: a small input frame, one encoder block, one decoder block."""
    torch.manual_seed(seed)
    patch_size = 8
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=1,
            num_heads=2,
            mlp_ratio=2,
            out_chans=embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=embed_dim,
            image_embedding_size=(image_size // patch_size, image_size // patch_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=embed_dim, mlp_dim=64, num_heads=2),
            transformer_dim=embed_dim,
            iou_head_depth=1,
            iou_head_hidden_dim=16,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


class BoxPrompts(torch.nn.Module):
    """Stands in for SAM's prompt encoder: hands the boxes, in the model's input frame, straight to the decoder."""

    def forward(self, points, boxes, masks):
        return boxes, None

    def get_dense_pe(self):
        return None


class BoxMasks(torch.nn.Module):
    """Stands in for SAM's mask decoder: low-resolution logits that are positive exactly inside each prompted box."""

    def __init__(self, input_size: int, low_res: int):
        super().__init__()
        self.input_size, self.low_res = input_size, low_res

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        centres = (torch.arange(self.low_res) + 0.5) * self.input_size / self.low_res
        x0, y0, x1, y1 = sparse_prompt_embeddings.T[:, :, None, None]
        inside = (centres[None, :] >= x0) & (centres[None, :] < x1) & (centres[:, None] >= y0) & (centres[:, None] < y1)
        return torch.where(inside, 10.0, -10.0)[:, None], torch.ones(len(sparse_prompt_embeddings), 1)


def box_echo_sam() -> Sam:
    """A SAM whose mask for a box is the box itself: checks the box -> prompt -> mask coordinate path exactly."""
    sam = tiny_sam(image_size=256)  # a finer input frame than 64 px, so box edges land within a pixel
    return Sam(sam.image_encoder, BoxPrompts(), BoxMasks(input_size=256, low_res=256)).eval()


def box_mask(box, shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def test_sam_gives_one_mask_per_box_in_image_coordinates():
    image, boxes = metaphase_with(TOUCHING, size=SIZE)
    masks = SamSegmenter(tiny_sam())(image, boxes)
    assert masks.shape == (2, SIZE[1], SIZE[0]) and masks.dtype == bool
    assert SamSegmenter(tiny_sam())(image, []).shape == (0, SIZE[1], SIZE[0])
    for converted in (image.convert("RGB"), np.asarray(image).astype(np.uint16) * 257):
        assert np.array_equal(SamSegmenter(tiny_sam())(converted, boxes), masks)


@pytest.mark.parametrize("shape", [(200, 240), (240, 90)], ids=["wide", "tall"])
def test_each_sam_mask_follows_its_box(shape):
    image = np.full(shape, 220, np.uint8)
    height, width = shape
    boxes = [(10, 20, 40, 60), (width - 50, height - 70, width - 5, height - 10), (30, 5, 80, 30)]
    masks = SamSegmenter(box_echo_sam())(image, boxes)
    for box, mask in zip(boxes, masks):
        assert iou(mask, box_mask(box, shape)) > 0.9


def test_random_sam_masks_stay_near_their_boxes():
    image, boxes = metaphase_with(CROSSING_OBLIQUE, size=SIZE)
    masks = SamSegmenter(tiny_sam(), box_margin=4)(image, boxes)
    assert masks.any()
    for box, mask in zip(boxes, masks):
        x0, y0, x1, y1 = box
        assert mask[y0 - 4 : y1 + 4, x0 - 4 : x1 + 4].sum() == mask.sum()


def test_sam_embeds_the_image_once_and_batches_like_one_by_one():
    image, boxes = metaphase_with(TOUCHING + CROSSING, size=SIZE)
    segmenter = SamSegmenter(tiny_sam())
    calls = []
    segmenter.predictor.model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    batched = segmenter(image, boxes)
    assert len(calls) == 1
    one_by_one = np.concatenate([segmenter(image, [box]) for box in boxes])
    assert np.mean(batched != one_by_one) < 1e-3  # only float rounding may differ


def test_sam_masks_feed_extract_chromosome():
    image, boxes = metaphase_with(TOUCHING, size=SIZE)
    masks = SamSegmenter(box_echo_sam())(image, boxes)
    crop = extract_chromosome(image, boxes[1], mask=masks[1])
    assert crop.size == (CANVAS_SIZE[1], CANVAS_SIZE[0])
    assert abs(ink_extent(crop)[0] - 60) <= 4  # the upright rod, at its native length


def test_sam_from_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam(seed=1))
    path = tmp_path / "sam_tiny.pth"
    saved = tiny_sam(seed=2)
    torch.save(saved.state_dict(), path)

    segmenter = SamSegmenter.from_checkpoint(path, model_type="vit_b", device="cpu")
    loaded = segmenter.predictor.model.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in saved.state_dict().items())
    assert segmenter.predictor.device.type == "cpu"

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        SamSegmenter.from_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="vit_x"):
        SamSegmenter.from_checkpoint(path, model_type="vit_x")
    other, garbage = tmp_path / "other.pth", tmp_path / "garbage.pth"
    torch.save(tiny_sam(embed_dim=16).state_dict(), other)
    garbage.write_text("not a checkpoint")
    for wrong in (other, garbage):
        with pytest.raises(ValueError, match="not a SAM vit_b checkpoint"):
            SamSegmenter.from_checkpoint(wrong, model_type="vit_b")
    with pytest.raises(TypeError, match="Sam model"):
        SamSegmenter(torch.nn.Linear(2, 2))
