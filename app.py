"""karyohf as a Gradio app (a Hugging Face Space): upload one specimen's metaphases, review what the pipeline found,
correct it, and download the report.

    python app.py            # or `make demo`; prints the local URL

Everything runs offline: analytics and run history are off, nothing is fetched at run time, the app is never
shared. Every result lives in the session's `gr.State`; uploads and downloads stay in Gradio's cache and are
deleted with the session (and by `delete_cache` in any case). All karyotyping is `karyohf.KaryotypePipeline`'s:
this file only presents its results and routes the clinician's corrections to it.

API: `Client(url).predict(files=[handle_file(path)], study="constitutional", specimen_id="", api_name="/analyze")`
returns (karyotype, summary, report, downloads); see docs/app.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from karyohf import KaryotypePipeline, SpecimenResult  # noqa: E402
from karyohf.cli import unique_names  # noqa: E402
from karyohf.cytogenetics import CHROMOSOMES  # noqa: E402
from karyohf.karyotype.cells import STUDIES  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
DISCLAIMER = ("**Research software, not a diagnostic device.** karyohf is not cleared or approved for clinical use "
              "(automated chromosome analysers are FDA class II devices, product code LNJ). Every result must be "
              "reviewed and signed off by a qualified cytogeneticist.")
# Uploads a browser may send: karyohf.images refuses files over 40 MiB itself, naming them; Gradio refuses anything
# over this before it reaches the pipeline.
MAX_FILE_SIZE = "100mb"
# A session's results are kept this long after its last change; every SWEEP_SECONDS Gradio deletes the files in
# its cache older than that.
SESSION_SECONDS, SWEEP_SECONDS = 4 * 3600, 1800
# The pipeline uses every core for one metaphase: analyses run one at a time, reviews alongside.
ANALYSES_AT_ONCE, EVENTS_AT_ONCE, QUEUE_SIZE = 1, 4, 64
THUMBNAIL = 360
CSS = """
#notice {background: #fff7e6; border-left: 5px solid #d97706; padding: 8px 14px; border-radius: 4px}
#karyotype textarea {font-family: ui-monospace, monospace; font-size: 1.7rem; font-weight: 700}
#cell-karyotype textarea {font-family: ui-monospace, monospace; font-size: 1.2rem; font-weight: 600}
"""
THEME = gr.themes.Soft(primary_hue="blue", font=["ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])  # system fonts: nothing fetched from the web


def _cache_folder() -> str:
    """A fresh folder for one session's downloads, inside Gradio's cache."""
    root = Path(get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="karyohf-", dir=root)


@dataclass
class Review:
    """One session's specimen under review, and the files it owns in Gradio's cache."""

    specimen: SpecimenResult
    uploads: list[str] = field(default_factory=list)
    folder: str = field(default_factory=_cache_folder)


def forget(blocks: gr.Blocks, review: Review | None) -> None:
    """Delete a finished session's downloads and the files its user uploaded (never an example's cached copy)."""
    if review is None:
        return
    shutil.rmtree(review.folder, ignore_errors=True)
    for upload in review.uploads:
        if upload in blocks.upload_file_set:
            blocks.upload_file_set.discard(upload)
            Path(upload).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the upload's own folder, once empty
                Path(upload).parent.rmdir()


def write_downloads(specimen: SpecimenResult, folder: str) -> list[str]:
    """The report JSON, COCO detections, a zip of the karyogram PNGs and the FHIR Observation, in `folder`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", specimen.specimen_id or "") or "specimen"
    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = {name: Path(folder) / f"{stem}_{name}" for name in
             ("report.json", "detections.coco.json", "karyograms.zip", "observation.fhir.json")}
    paths["report.json"].write_text(json.dumps(specimen.to_dict(), indent=2))
    paths["detections.coco.json"].write_text(json.dumps(specimen.to_coco()))
    paths["observation.fhir.json"].write_text(json.dumps(specimen.to_fhir(), indent=2))
    with zipfile.ZipFile(paths["karyograms.zip"], "w") as archive:
        for number, cell in enumerate(specimen.cells, start=1):
            picture = io.BytesIO()
            cell.karyogram().save(picture, format="PNG")
            archive.writestr(f"{number:02d}_{Path(cell.name).stem}_karyogram.png", picture.getvalue())
    return [str(path) for path in paths.values()]


def summary_markdown(specimen: SpecimenResult) -> str:
    """The specimen in words: counts, findings with their cells, non-clonal findings, reasons to refer, bad files."""
    report = specimen.to_dict()
    counts = report["counts"]
    lines = [f"**{specimen.study.capitalize()} study** · {_count(counts['metaphases'], 'metaphase')} uploaded, "
             f"{counts['counted']} counted, {counts['analysed']} analysed · sex chromosomes "
             f"{specimen.reference_sex or 'not determined'}"]
    if specimen.karyotype is None:
        lines.append("**No karyotype could be given**: see the reasons below.")
    lines.append("#### Findings (clonal, in the karyotype)")
    lines += [f"- `{f.iscn}` ({f.kind}) in {_count(len(f.cells), 'cell')}: {_names(f.cells)}"
              for f in specimen.findings] or ["- none"]
    lines.append("#### Non-clonal findings (not in the karyotype)")
    lines += [f"- `{f.iscn}` ({f.kind}) in {_count(len(f.cells), 'cell')}: {_names(f.cells)}"
              for f in specimen.non_clonal] or ["- none"]
    lines.append("#### Refer to a cytogeneticist")
    lines += [f"- {_escape(reason)}" for reason in specimen.refer] or ["- no reason found (review still required)"]
    if specimen.errors:
        lines.append("#### Files not analysed")
        lines += [f"- {_escape(error['error'])}" for error in specimen.errors]
    return "\n".join(lines)


def chromosome_table(cell, heads: list[str]):
    """One row per chromosome: identity, confidence, entropy, flags and each aberration head's probability (blank
    where that head did not screen it); flagged rows tinted red, low-confidence ones amber."""
    rows, tints = [], []
    for row in cell.flags():
        flags = (["not counted: an unsure extra copy (relabel to confirm)"] * (not row["counted"])
                 + ["counted, but may not be a chromosome (relabel to confirm, or delete)"] * row["doubtful"]
                 + ["low confidence"] * row["low_confidence"] + ["de novo outlier"] * row["denovo_outlier"]
                 + [f"{name} called" for name in row["flagged"]])
        rows.append([row["index"], row["label"], f"{row['confidence']:.3f}", f"{row['entropy']:.3f}", ", ".join(flags)]
                    + [f"{row['aberrations'][name]:.3f}" if name in row["aberrations"] else "" for name in heads])
        tints.append("#fde2e2" if row["flagged"] or row["denovo_outlier"] else
                     "#fff1d6" if row["low_confidence"] or not row["counted"] or row["doubtful"] else "")
    table = pd.DataFrame(rows, columns=["#", "chromosome", "confidence", "entropy", "flags"]
                         + [f"P({name})" for name in heads])
    return table.style.apply(lambda r: [f"background-color: {tints[r.name]}" if tints[r.name] else ""] * len(r),
                             axis=1)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _names(cells) -> str:
    return _escape(", ".join(cells))


def _escape(text: str) -> str:
    """Text safe inside Markdown (file names and reasons may hold *, _, | ...)."""
    return re.sub(r"([\\`*_{}\[\]()#+|<>!])", r"\\\1", str(text))


class KaryotypeApp:
    """The app's event functions around one loaded pipeline, and the page that wires them (`build`)."""

    def __init__(self, pipe: KaryotypePipeline):
        self.pipe = pipe
        self.heads = [name for head in pipe.heads for name in head.label_names[1:]]

    # -- events --

    def analyze(self, files: list[str] | None, study: str = "neoplasia", specimen_id: str = "",
                previous: Review | None = None, progress=gr.Progress()):
        """One specimen's metaphase files -> (review, karyotype, summary, report, downloads). Unreadable files are
        listed (each by name, with why) and the others analysed. The session's `previous` review hands over its
        files, so that the session's end deletes them all."""
        if not files:
            raise gr.Error("Upload at least one metaphase image.")
        paths = [Path(file) for file in files]
        progress((0, len(paths)), desc=f"Analysing {len(paths)} metaphases", unit="metaphases")

        def step(done, total, name):
            progress((done, total), desc=f"Metaphase {done} of {total} analysed ({name})", unit="metaphases")

        specimen = self.pipe(paths, study=study, progress=step, specimen_id=specimen_id or None,
                             names=unique_names(paths))
        for error in specimen.errors:
            gr.Warning(error["error"])
        uploads = list(dict.fromkeys([*(previous.uploads if previous else []), *map(str, paths)]))
        if previous is None:
            return self._updated(Review(specimen, uploads))
        for stale in Path(previous.folder).glob("*"):
            stale.unlink()
        return self._updated(Review(specimen, uploads, previous.folder))

    def show_specimen(self, review: Review | None):
        """The gallery of metaphases, the metaphase picker and the list of corrections."""
        if review is None:
            return [], gr.update(choices=[], value=None), self._corrections(None)
        cells = review.specimen.cells
        thumbnails = []
        for cell in cells:
            picture = cell.overlay()
            picture.thumbnail((THUMBNAIL, THUMBNAIL))
            thumbnails.append((picture, f"{cell.name}: {cell.karyotype or 'no karyotype'}"
                                        + ("" if cell.analysable else " (not analysed)")))
        choices = [(f"{i + 1}. {cell.name}", i) for i, cell in enumerate(cells)]
        return thumbnails, gr.update(choices=choices, value=0 if cells else None), self._corrections(review)

    def show_metaphase(self, review: Review | None, index: int | None):
        """One metaphase: status, karyotype, overlay, karyogram, chromosome table, its chromosome picker."""
        cell = self._cell(review, index, required=False)
        if cell is None:
            return ("Analyse a specimen to review its metaphases.", "", None, None, None,
                    gr.update(choices=[], value=None), gr.update(value="Exclude this metaphase"),
                    gr.update(choices=[], value=None))
        rows = cell.flags()
        uncounted = len(cell.labels) - cell.chromosome_count
        status = (f"**{_escape(cell.name)}** · {cell.chromosome_count} chromosomes"
                  + (f" (and {uncounted} unsure objects not counted)" if uncounted else "")
                  + (f" · {len(cell.missed_candidates)} possibly missed (purple ?)" if cell.missed_candidates else "")
                  + " · "
                  + ("analysable" if cell.analysable else
                     "**excluded by the reviewer**" if cell.excluded else f"**not analysed**: {_escape(cell.quality)}")
                  + f" · {sum(r['low_confidence'] for r in rows)} low-confidence identities · "
                  f"{sum(bool(r['flagged']) for r in rows)} chromosomes flagged by an aberration head")
        choices = [(f"#{r['index']} · {r['label']} ({r['confidence']:.2f})", r["index"]) for r in rows]
        missed = [(f"?{o['label']} ({o['confidence']:.2f}) at {o['box'][0]:.0f}, {o['box'][1]:.0f}", o["index"])
                  for o in cell.to_dict()["possibly_missed_objects"]]
        return (status, cell.karyotype or "no karyotype", cell.overlay(), cell.karyogram(),
                chromosome_table(cell, self.heads), gr.update(choices=choices, value=None),
                gr.update(value="Include this metaphase again" if cell.excluded else "Exclude this metaphase"),
                gr.update(choices=missed, value=None))

    def pick_metaphase(self, evt: gr.SelectData):
        """A click on the gallery picks that metaphase."""
        return evt.index

    def pick_row(self, evt: gr.SelectData):
        """A click on a row of the chromosome table picks that chromosome."""
        return evt.index[0]

    def pick_on_image(self, review: Review | None, index: int | None, evt: gr.SelectData):
        """A click on the overlay picks the chromosome whose box holds the point (the smallest such box), else the
        nearest box centre."""
        cell = self._cell(review, index, required=False)
        if cell is None or not cell.labels:
            return None
        x, y = evt.index
        inside = [(float((x1 - x0) * (y1 - y0)), i) for i, (x0, y0, x1, y1) in enumerate(cell.boxes)
                  if x0 <= x <= x1 and y0 <= y <= y1]
        if inside:
            return min(inside)[1]
        centres = (cell.boxes[:, :2] + cell.boxes[:, 2:]) / 2
        return int(((centres - (x, y)) ** 2).sum(1).argmin())

    def relabel(self, review: Review | None, index: int | None, chromosome: int | None, label: str | None,
                reviewer: str = ""):
        """Give the picked chromosome a new identity; everything is recomputed and the correction recorded."""
        cell = self._cell(review, index)
        if chromosome is None or not label:
            raise gr.Error("Pick a chromosome (click it on the image or in the table) and its new identity.")
        picked = int(chromosome)
        if 0 <= picked < len(cell.labels) and cell.labels[picked] == label and cell.counted[picked] \
                and not cell.doubtful[picked]:
            raise gr.Error(f"Chromosome #{picked} is already {label}.")  # relabelling an unsure one confirms it
        return self._corrected(review, index, lambda: self.pipe.relabel(cell, int(chromosome), label,
                                                                        who=reviewer or None))

    def delete(self, review: Review | None, index: int | None, chromosome: int | None, reviewer: str = ""):
        """Remove the picked chromosome's box (debris, a nucleus, a duplicate)."""
        cell = self._cell(review, index)
        if chromosome is None:
            raise gr.Error("Pick the chromosome to delete (click it on the image or in the table).")
        return self._corrected(review, index, lambda: self.pipe.delete(cell, int(chromosome), who=reviewer or None))

    def count_object(self, review: Review | None, index: int | None, candidate: int | None, reviewer: str = ""):
        """Count a possibly missed object (purple on the image) as a chromosome: cut, identified, recorded."""
        cell = self._cell(review, index)
        if candidate is None:
            raise gr.Error("Pick the possibly missed object to count.")
        return self._corrected(review, index, lambda: self.pipe.count_candidate(cell, int(candidate),
                                                                                who=reviewer or None))

    def exclude(self, review: Review | None, index: int | None, reviewer: str = ""):
        """Leave the picked metaphase out of the specimen karyotype, or bring an excluded one back."""
        cell = self._cell(review, index)
        return self._corrected(review, index, lambda: self.pipe.exclude(cell, not cell.excluded,
                                                                        who=reviewer or None))

    # -- helpers --

    def _cell(self, review: Review | None, index: int | None, required: bool = True):
        if review is None or index is None or not 0 <= int(index) < len(review.specimen.cells):
            if required:
                raise gr.Error("Analyse a specimen and pick a metaphase first.")
            return None
        return review.specimen.cells[int(index)]

    def _corrected(self, review: Review, index: int, correct):
        try:
            cell = correct()
        except ValueError as error:
            raise gr.Error(str(error)) from error
        cells = list(review.specimen.cells)
        cells[int(index)] = cell
        specimen = review.specimen
        review.specimen = self.pipe.specimen(cells, specimen.study, specimen.errors, specimen.specimen_id)
        return self._updated(review)

    def _updated(self, review: Review):
        specimen = review.specimen
        return (review, specimen.karyotype or "no karyotype", summary_markdown(specimen), specimen.to_dict(),
                write_downloads(specimen, review.folder))

    @staticmethod
    def _corrections(review: Review | None) -> pd.DataFrame:
        rows = [] if review is None else [
            [c["when"], cell.name, c["action"], c["chromosome"], c["from"], c["to"], c["who"] or ""]
            for cell in review.specimen.cells for c in cell.corrections]
        return pd.DataFrame(sorted(rows), columns=["when (UTC)", "metaphase", "action", "chromosome #", "from", "to",
                                                   "reviewer"])

    # -- the page --

    def build(self) -> gr.Blocks:
        """The page: upload and study, specimen summary, per-metaphase review and correction, downloads."""
        with gr.Blocks(title="karyohf: automatic karyotyping", analytics_enabled=False,
                       delete_cache=(SWEEP_SECONDS, SESSION_SECONDS)) as demo:
            review = gr.State(None, time_to_live=SESSION_SECONDS, delete_callback=functools.partial(forget, demo))
            gr.Markdown("# karyohf · automatic karyotyping of G-banded metaphases")
            gr.Markdown(DISCLAIMER, elem_id="notice")
            with gr.Row():
                with gr.Column(scale=2):
                    files = gr.File(label="Metaphase images (one specimen, several at once)",
                                    file_count="multiple", height=180)
                    with gr.Row():
                        study = gr.Radio(list(STUDIES), value="neoplasia", label="Study")
                        specimen_id = gr.Textbox(label="Specimen ID (optional)", max_lines=1)
                    analyse = gr.Button("Analyse specimen", variant="primary")
                    gr.Examples([[[str(EXAMPLES / f"{name}.jpg")], "constitutional"]
                                 for name in ("1091302", "1091442", "1091714")],
                                inputs=[files, study], label="Example metaphases (Tseng et al. 2023)",
                                example_labels=["46,XY", "46,XX", "47,XXY"])
                with gr.Column(scale=3):
                    karyotype = gr.Textbox(label="Specimen karyotype (ISCN 2024)", elem_id="karyotype",
                                           interactive=False, buttons=["copy"])
                    summary = gr.Markdown("Upload the metaphases of one specimen, choose the study and press "
                                          "**Analyse specimen**.", label="Summary")
            gr.Markdown("## Review each metaphase")
            gallery = gr.Gallery(label="Metaphases: click one to review it", columns=8, height=200,
                                 allow_preview=False, object_fit="contain", fit_columns=False)
            with gr.Row():
                metaphase = gr.Dropdown(label="Metaphase", choices=[], scale=1)
                cell_karyotype = gr.Textbox(label="This metaphase's karyotype", elem_id="cell-karyotype",
                                            interactive=False, scale=1)
                status = gr.Markdown(scale=3)
            with gr.Row():
                overlay = gr.Image(label="Detections: click a chromosome to pick it", type="pil",
                                   interactive=False, height=560)
                karyogram = gr.Image(label="Karyogram (flagged chromosomes outlined in red)", type="pil",
                                     interactive=False, height=560)
            gr.Markdown("Boxes: blue = identified with confidence, orange = low confidence, grey = not counted "
                        "(an unsure extra copy), red = flagged by an aberration head, purple ? = not counted but "
                        "possibly a chromosome. Pick a chromosome on the image or in the table, then correct it.")
            gr.Markdown("### Correct")
            with gr.Row():
                chromosome = gr.Dropdown(label="Chromosome", choices=[])
                label = gr.Dropdown(list(CHROMOSOMES), label="Correct identity", value=None)
                reviewer = gr.Textbox(label="Reviewer (recorded with each correction)", max_lines=1)
            with gr.Row():
                relabel = gr.Button("Relabel chromosome", variant="primary")
                delete = gr.Button("Delete box (not a chromosome)", variant="stop")
                exclude = gr.Button("Exclude this metaphase")
            with gr.Row():
                missed = gr.Dropdown(label="Possibly missed object (purple ?)", choices=[])
                count = gr.Button("Count it as a chromosome")
            table = gr.Dataframe(label="Chromosomes of this metaphase (click a row to pick it)", interactive=False,
                                 max_height=420, wrap=True)
            corrections = gr.Dataframe(self._corrections(None), label="Corrections made", interactive=False)
            gr.Markdown("## Report and downloads")
            downloads = gr.File(label="JSON report, COCO detections, karyogram PNGs (zip), FHIR R4 Observation",
                                file_count="multiple", interactive=False)
            with gr.Accordion("Full report (JSON)", open=False):
                report = gr.JSON(label="Report")

            specimen_outputs = [review, karyotype, summary, report, downloads]
            cell_outputs = [status, cell_karyotype, overlay, karyogram, table, chromosome, exclude, missed]

            def refresh(event, name):
                """After a change of the specimen: its gallery and picker, then the picked metaphase."""
                (event.success(self.show_specimen, review, [gallery, metaphase, corrections],
                               api_name=f"{name}_show_specimen", api_visibility="undocumented")
                 .success(self.show_metaphase, [review, metaphase], cell_outputs,
                          api_name=f"{name}_show_metaphase", api_visibility="undocumented"))

            refresh(analyse.click(self.analyze, [files, study, specimen_id, review], specimen_outputs,
                                  api_name="analyze", concurrency_limit=ANALYSES_AT_ONCE, concurrency_id="analysis"),
                    "analyze")
            for button, fn, inputs, name in (
                    (relabel, self.relabel, [review, metaphase, chromosome, label, reviewer], "relabel"),
                    (delete, self.delete, [review, metaphase, chromosome, reviewer], "delete"),
                    (count, self.count_object, [review, metaphase, missed, reviewer], "count_object"),
                    (exclude, self.exclude, [review, metaphase, reviewer], "exclude")):
                refresh(button.click(fn, inputs, specimen_outputs, api_name=name), name)
            gallery.select(self.pick_metaphase, None, metaphase, api_name="pick_metaphase").success(
                self.show_metaphase, [review, metaphase], cell_outputs, api_name="pick_metaphase_show",
                api_visibility="undocumented")
            metaphase.input(self.show_metaphase, [review, metaphase], cell_outputs, api_name="show_metaphase")
            table.select(self.pick_row, None, chromosome, api_name="pick_chromosome")
            overlay.select(self.pick_on_image, [review, metaphase], chromosome, api_name="pick_chromosome_on_image")
        return demo.queue(default_concurrency_limit=EVENTS_AT_ONCE, max_size=QUEUE_SIZE)


def launch(demo: gr.Blocks, **kwargs):
    """Launch offline: no share link, no run history, no analytics, uploads capped at MAX_FILE_SIZE."""
    return demo.launch(share=False, max_file_size=MAX_FILE_SIZE, theme=THEME, css=CSS, run_history=False,
                       ssr_mode=False, footer_links=["api", "settings"], **kwargs)


def main() -> None:
    """Load the pipeline once, launch the page, print its URL and serve until stopped."""
    demo = KaryotypeApp(KaryotypePipeline.from_pretrained()).build()
    _, url, _ = launch(demo, prevent_thread_lock=True, quiet=True)
    print(f"karyohf app running at {url} (offline, not shared; Ctrl+C to stop)", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
