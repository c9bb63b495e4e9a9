"""The Gradio app (app.py) with the shipped checkpoints and the bundled example metaphases: its event functions
called directly (analysis, bad uploads, corrections, downloads, the FHIR Observation), its API through
gradio_client against a launched server, and a real browser (Debian's Chromium driven by Playwright)."""

import dataclasses
import importlib.util
import json
import shutil
import sys
import time
import warnings
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.utils import get_upload_folder
from PIL import Image

from karyohf import KaryotypePipeline
from karyohf.karyotype import validate_karyotype
from karyohf.pipeline import FHIR_PROFILE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_XY = ROOT / "examples" / "1091302.jpg"  # the pipeline gives 46,XY (examples/README.md)
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "app_screenshot.png"
REVIEWER = "Dr Test"


def load_app():
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


app = load_app()


@pytest.fixture(scope="module", autouse=True)
def gradio_cache(tmp_path_factory):
    """Gradio's cache (uploads, downloads, rendered images) in a temporary folder of this test run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio-cache")))
        yield


@pytest.fixture(scope="module")
def ui():
    return app.KaryotypeApp(KaryotypePipeline.from_pretrained())


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """The XY example as JPEG, 16-bit TIFF and RGBA PNG (all must work), and one file of each bad kind."""
    folder = tmp_path_factory.mktemp("uploads")
    gray = np.asarray(Image.open(EXAMPLE_XY).convert("L"))
    good = {"good.jpg": folder / "good.jpg", "sixteen-bit.tif": folder / "sixteen-bit.tif",
            "rgba.png": folder / "rgba.png"}
    shutil.copy(EXAMPLE_XY, good["good.jpg"])
    Image.fromarray(gray.astype(np.uint16) * 257).save(good["sixteen-bit.tif"])
    Image.fromarray(gray).convert("RGBA").save(good["rgba.png"])
    bad = {name: folder / name for name in ("notes.txt", "truncated.jpg", "scan.pdf", "one-pixel.png", "blank.png",
                                            "bomb.png", "fifty-megabytes.jpg")}
    bad["notes.txt"].write_text("karyotype: 46,XY\n")
    bad["truncated.jpg"].write_bytes(EXAMPLE_XY.read_bytes()[:4000])
    bad["scan.pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    Image.new("L", (1, 1), 128).save(bad["one-pixel.png"])
    Image.new("L", (600, 600), 200).save(bad["blank.png"])
    Image.new("L", (8000, 7500)).save(bad["bomb.png"])  # 60 megapixels in a few kilobytes
    with open(bad["fifty-megabytes.jpg"], "wb") as handle:
        handle.write(EXAMPLE_XY.read_bytes())
        handle.truncate(50_000_000)
    return good, bad


@pytest.fixture(scope="module")
def analysed(ui, uploads):
    """One specimen: the three good files among the seven bad ones, constitutional study."""
    good, bad = uploads
    files = [str(path) for path in [*good.values(), *bad.values()]]
    files.insert(4, files.pop(0))  # good files among the bad ones
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ui.analyze(files, "constitutional", "S-42")
    return (*result, [str(warning.message) for warning in caught if warning.category is UserWarning])


def fresh(review, folder):
    """A copy of a session's review to correct (corrections replace its specimen, never the original's)."""
    return app.Review(review.specimen, folder=str(folder))


# -- the event functions, called directly --

def test_bad_uploads_are_each_named_with_a_reason_and_the_rest_analysed(analysed, uploads):
    good, bad = uploads
    review, karyotype, summary, report, _, toasts = analysed
    assert sorted(cell.name for cell in review.specimen.cells) == sorted(good)  # 16-bit TIFF and RGBA work
    errors = {error["file"]: error["error"] for error in report["errors"]}
    assert sorted(errors) == sorted(bad)
    for name, message in errors.items():
        assert message.startswith(f"{name}:")
        assert app._escape(message) in summary and message in toasts  # listed, and a warning shown
    assert "megapixels" in errors["bomb.png"] and "MiB" in errors["fifty-megabytes.jpg"]
    assert "too small" in errors["one-pixel.png"] and "blank" in errors["blank.png"]
    assert report["counts"] == {"metaphases": 10, "counted": 3, "analysed": 3}
    assert karyotype == report["karyotype"] == review.specimen.karyotype == "46,XY"


def test_the_downloads_hold_the_report_detections_karyograms_and_a_valid_fhir_observation(analysed):
    from fhir.resources.R4B.observation import Observation

    review, karyotype, _, report, downloads, _ = analysed
    files = {Path(path).name: Path(path) for path in downloads}
    assert sorted(files) == ["S-42_detections.coco.json", "S-42_karyograms.zip", "S-42_observation.fhir.json",
                             "S-42_report.json"]
    assert all(Path(path).parent == Path(review.folder) for path in downloads)
    assert Path(review.folder).resolve().is_relative_to(Path(get_upload_folder()).resolve())
    assert json.loads(files["S-42_report.json"].read_text())["karyotype"] == karyotype
    coco = json.loads(files["S-42_detections.coco.json"].read_text())
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == sum(len(c["chromosomes"]) for c in report["cells"])
    with zipfile.ZipFile(files["S-42_karyograms.zip"]) as archive:
        assert len([name for name in archive.namelist() if name.endswith("_karyogram.png")]) == 3
    observation = json.loads(files["S-42_observation.fhir.json"].read_text())
    Observation.model_validate(observation)
    assert observation["meta"]["profile"] == [FHIR_PROFILE]
    assert observation["code"]["coding"][0]["code"] == "69548-6"
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "LA9633-4"
    component = observation["component"][0]
    assert component["code"]["coding"][0]["code"] == "81291-7"
    assert component["valueCodeableConcept"]["coding"] == [{"system": "https://iscn.karger.com", "code": "46,XY"}]
    assert observation["specimen"] == {"display": "S-42"}


def test_without_a_karyotype_the_fhir_observation_says_why(ui):
    from fhir.resources.R4B.observation import Observation

    observation = ui.pipe.specimen([], "neoplasia").to_fhir()
    Observation.model_validate(observation)
    assert "valueCodeableConcept" not in observation and "component" not in observation
    assert "needs 20" in observation["dataAbsentReason"]["text"]


def test_the_metaphase_view_shows_overlay_karyogram_and_a_row_per_chromosome(ui, analysed):
    review = analysed[0]
    cell = review.specimen.cells[0]
    gallery, picker, _ = ui.show_specimen(review)
    assert len(gallery) == 3 and picker["value"] == 0 and len(picker["choices"]) == 3
    status, karyotype, overlay, karyogram, table, chromosomes, exclude, missed = ui.show_metaphase(review, 0)
    assert karyotype == cell.karyotype and "analysable" in status
    assert overlay.size == cell.image.shape[::-1] and karyogram.mode == "RGB"
    assert len(table.data) == cell.chromosome_count == len(chromosomes["choices"])
    assert list(table.data.columns[:5]) == ["#", "chromosome", "confidence", "entropy", "flags"]
    assert [f"P({name})" for name in ui.heads] == list(table.data.columns[5:])
    assert exclude["value"] == "Exclude this metaphase"
    assert [value for _, value in missed["choices"]] == cell.missed_candidates


def test_relabel_updates_the_cell_the_specimen_and_the_karyogram_and_is_recorded(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    before = ui.show_metaphase(review, 0)[3]
    for index in (0, 1):  # a gain in two cells is clonal
        chromosome = review.specimen.cells[index].labels.index("1")
        review, karyotype, summary, report, _ = ui.relabel(review, index, chromosome, "21", REVIEWER)
        assert review.specimen.cells[index].karyotype == "46,XY,-1,+21"
    assert karyotype == report["karyotype"] == review.specimen.karyotype != "46,XY"
    assert "+21" in karyotype and validate_karyotype(karyotype) == karyotype
    assert "+21" in summary and analysed[0].specimen.karyotype == "46,XY"  # the original session is untouched
    record = report["cells"][0]["corrections"][-1]
    assert {key: record[key] for key in ("action", "from", "to", "who")} == {
        "action": "relabel", "from": "1", "to": "21", "who": REVIEWER}
    assert record["chromosome"] == analysed[0].specimen.cells[0].labels.index("1") and record["when"]
    assert not np.array_equal(np.asarray(before), np.asarray(ui.show_metaphase(review, 0)[3]))
    corrections = ui.show_specimen(review)[2]
    assert list(corrections["action"]) == ["relabel", "relabel"] and set(corrections["reviewer"]) == {REVIEWER}


def test_delete_removes_a_box_and_is_recorded(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    cell = review.specimen.cells[2]
    review, _, _, report, _ = ui.delete(review, 2, 5, REVIEWER)
    assert review.specimen.cells[2].chromosome_count == cell.chromosome_count - 1
    assert review.specimen.cells[2].karyotype == f"45,XY,-{cell.labels[5]}"
    assert report["cells"][2]["corrections"][-1]["action"] == "delete"
    assert report["cells"][2]["corrections"][-1]["from"] == cell.labels[5]


def test_counting_an_uncounted_object_adds_a_confirmed_chromosome_and_is_recorded(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    cell = review.specimen.cells[0]
    assert len(cell.candidate_labels) > 0  # the detector's weak boxes, down to the candidate floor
    with pytest.raises(gr.Error, match="Pick the possibly missed object"):
        ui.count_object(review, 0, None, REVIEWER)
    review, _, _, report, _ = ui.count_object(review, 0, 0, REVIEWER)
    counted = review.specimen.cells[0]
    assert counted.chromosome_count == cell.chromosome_count + 1 and counted.confirmed[-1]
    assert len(counted.candidate_labels) == len(cell.candidate_labels) - 1
    assert report["cells"][0]["corrections"][-1]["action"] == "count"
    assert report["cells"][0]["corrections"][-1]["who"] == REVIEWER


def test_exclude_leaves_a_metaphase_out_and_brings_it_back(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    review, _, _, report, _ = ui.exclude(review, 1, REVIEWER)
    assert report["counts"]["analysed"] == 2 and report["cells"][1]["excluded"]
    assert ui.show_metaphase(review, 1)[6]["value"] == "Include this metaphase again"
    review, _, _, report, _ = ui.exclude(review, 1, REVIEWER)
    assert report["counts"]["analysed"] == 3
    assert [c["action"] for c in report["cells"][1]["corrections"]] == ["exclude", "include"]


def test_events_refuse_what_cannot_be_done_with_a_message(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    with pytest.raises(gr.Error, match="Upload at least one"):
        ui.analyze([], "neoplasia", "")
    with pytest.raises(gr.Error, match="Analyse a specimen"):
        ui.relabel(None, 0, 0, "X", "")
    sure = next(row["index"] for row in review.specimen.cells[0].flags() if row["counted"] and not row["doubtful"])
    with pytest.raises(gr.Error, match="already"):
        ui.relabel(review, 0, sure, review.specimen.cells[0].labels[sure], "")
    with pytest.raises(gr.Error, match="no chromosome 999"):
        ui.delete(review, 0, 999, "")


def test_a_doubtful_chromosome_is_shown_and_relabelling_it_to_its_own_label_confirms_it(ui, analysed, tmp_path):
    review = fresh(analysed[0], tmp_path)
    cell = review.specimen.cells[0]
    index = next(row["index"] for row in cell.flags() if row["counted"] and not row["doubtful"])
    verification = cell.verification.copy()
    verification[index] = 0.1  # the verifier doubts it is a chromosome
    doubted = dataclasses.replace(cell, verification=verification)
    review = app.Review(dataclasses.replace(review.specimen, cells=[doubted, *review.specimen.cells[1:]]),
                        folder=str(tmp_path))
    flags = app.chromosome_table(doubted, []).data.set_index("#").loc[index, "flags"]
    assert "may not be a chromosome" in flags
    review, *_ = ui.relabel(review, 0, index, cell.labels[index], REVIEWER)
    confirmed = review.specimen.cells[0]
    assert confirmed.confirmed[index] and not confirmed.doubtful[index]
    assert confirmed.labels[index] == cell.labels[index]


def test_a_click_picks_the_chromosome_under_it(ui, analysed):
    review = analysed[0]
    cell = review.specimen.cells[0]
    index = int(np.argmin((cell.boxes[:, 2] - cell.boxes[:, 0]) * (cell.boxes[:, 3] - cell.boxes[:, 1])))
    x0, y0, x1, y1 = cell.boxes[index]
    click = gr.SelectData(None, {"index": [float(x0 + x1) / 2, float(y0 + y1) / 2], "value": None})
    assert ui.pick_on_image(review, 0, click) == index
    assert ui.pick_row(gr.SelectData(None, {"index": [7, 2], "value": "x"})) == 7


def test_a_finished_session_deletes_its_downloads_and_uploads_and_nothing_else(ui, analysed, tmp_path):
    demo = ui.build()
    upload = Path(get_upload_folder()) / "karyohf-test-upload" / "metaphase.jpg"
    upload.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_XY, upload)
    demo.upload_file_set.add(str(upload))
    example = tmp_path / "an-example-or-any-other-file.jpg"  # not uploaded by the user: kept
    shutil.copy(EXAMPLE_XY, example)
    review = app.Review(analysed[0].specimen, uploads=[str(upload), str(example)])
    app.write_downloads(review.specimen, review.folder)
    app.forget(demo, review)
    assert not upload.exists() and not upload.parent.exists() and not Path(review.folder).exists()
    assert example.exists() and str(upload) not in demo.upload_file_set


def test_a_new_analysis_in_a_session_takes_over_the_previous_ones_files(ui, uploads, tmp_path):
    good, _ = uploads
    previous = app.Review(ui.pipe.specimen([], "neoplasia", specimen_id="old"), uploads=["earlier.jpg"],
                          folder=str(tmp_path))
    app.write_downloads(previous.specimen, previous.folder)
    review, *_, downloads = ui.analyze([str(good["good.jpg"])], "neoplasia", "new", previous)
    assert review.folder == previous.folder and review.uploads == ["earlier.jpg", str(good["good.jpg"])]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(Path(path).name for path in downloads)


# -- a launched server --

@pytest.fixture(scope="module")
def server(ui):
    demo = ui.build()
    _, url, _ = app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield url
    demo.close()


def test_the_api_names_a_bad_upload_stays_up_and_analyses_the_next(server, uploads):
    from gradio_client import Client, handle_file

    good, bad = uploads
    client = Client(server, download_files=False, verbose=False)
    karyotype, _, report, _ = client.predict(files=[handle_file(str(bad["scan.pdf"])),
                                                    handle_file(str(bad["fifty-megabytes.jpg"]))],
                                             study="constitutional", specimen_id="", api_name="/analyze")
    assert karyotype == "no karyotype" and report["karyotype"] is None
    assert [error["file"] for error in report["errors"]] == ["scan.pdf", "fifty-megabytes.jpg"]
    assert "40 MiB" in report["errors"][1]["error"]
    karyotype, _, report, downloads = client.predict(files=[handle_file(str(good["good.jpg"]))],
                                                     study="constitutional", specimen_id="", api_name="/analyze")
    assert karyotype == report["karyotype"] == "46,XY" and report["errors"] == []
    assert len(downloads) == 4


def test_a_browser_uploads_an_example_and_sees_its_karyotype(server):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    outside = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.on("request", lambda request: outside.append(request.url)
                    if not request.url.startswith((server, "data:", "blob:")) else None)
            page.goto(server)
            page.set_input_files("input[type=file]", str(EXAMPLE_XY))
            page.get_by_label("constitutional").check()
            page.get_by_text(EXAMPLE_XY.stem).first.wait_for()  # the upload has arrived
            page.get_by_role("button", name="Analyse specimen").click()
            page.wait_for_function("() => document.querySelector('#karyotype textarea').value === '46,XY'",
                                   timeout=120_000)
            page.wait_for_function("() => document.querySelector('#cell-karyotype textarea').value === '46,XY'",
                                   timeout=60_000)
            time.sleep(1)  # let the images finish drawing
            assert page.get_by_text("Research software, not a diagnostic device").is_visible()
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert outside == []  # nothing fetched from the web
