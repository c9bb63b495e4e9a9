"""`karyohf` command line; every command goes through `KaryotypePipeline`.

    karyohf predict PATH... --out DIR   a specimen's metaphases (files, folders, globs) -> its karyotype and a report
    karyohf calibrate PATH... --out DIR your lab's normal metaphases -> a copy of the checkpoints whose heads call
                                        cells at operating points chosen on them
    karyohf demo                        one held-out real metaphase of the shared data through the pipeline
    karyohf push CHECKPOINT --repo-id ORG/NAME            a checkpoint folder, with its card, to the Hub
    karyohf push checkpoints --bundle --repo-id ORG/NAME  every checkpoint as one repository (the pipeline's layout)

`predict` shards its inputs across processes (and GPUs) when started by accelerate (or torchrun):
    accelerate launch --multi_gpu -m karyohf.cli predict archive/ --out reports/     # one process per GPU
    torchrun --nproc_per_node 2 -m karyohf.cli predict archive/ --out reports/     # CPU processes
each process then analyses its share and writes its own report under DIR/shard-<k>/.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def expand_inputs(paths: list[str]) -> tuple[list[Path], list[dict]]:
    """Files as given, folders' image files (recursively, sorted), globs expanded; unmatched paths as errors."""
    files, errors = [], []
    for text in paths:
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            errors.append({"file": text, "error": f"{text}: no file matches this pattern"})
        for match in map(Path, matches):
            if match.is_dir():
                files += sorted(p for p in match.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                                and not p.name.startswith("."))
            elif match.is_file():
                files.append(match)
            else:
                errors.append({"file": text, "error": f"{text}: file not found"})
    return list(dict.fromkeys(files)), errors


def unique_names(files: list[Path]) -> list[str]:
    """File names, made unique where two folders hold the same name (`a/1.jpg`, `b/1.jpg` -> `1.jpg`, `1-2.jpg`)."""
    seen: dict[str, int] = {}
    names = []
    for path in files:
        seen[path.name] = seen.get(path.name, 0) + 1
        names.append(path.name if seen[path.name] == 1 else f"{path.stem}-{seen[path.name]}{path.suffix}")
    return names


def write_outputs(specimen, output: Path) -> None:
    """report.json, karyotype.txt, detections.coco.json and per cell <name>_karyogram.png / <name>_overlay.png."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(specimen.to_dict(), indent=2))
    (output / "karyotype.txt").write_text((specimen.karyotype or "no karyotype") + "\n"
                                          + "".join(f"refer: {reason}\n" for reason in specimen.refer))
    (output / "detections.coco.json").write_text(json.dumps(specimen.to_coco()))
    for cell in specimen.cells:
        stem = Path(cell.name).stem
        cell.karyogram().save(output / f"{stem}_karyogram.png")
        cell.overlay().save(output / f"{stem}_overlay.png")


def checkpoints_folder(args: argparse.Namespace) -> Path | None:
    """The folder of checkpoints `--checkpoints` names, else the default places (`resolve_checkpoints`: the
    environment, the checkout, the Hub); None, with every place tried said on stderr, when none holds them."""
    from .pipeline import resolve_checkpoints

    try:
        return resolve_checkpoints(args.checkpoints)
    except FileNotFoundError as error:
        print(f"karyohf {args.command}: {error}", file=sys.stderr)
        return None


def predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pipeline import KaryotypePipeline

    checkpoints = checkpoints_folder(args)
    if checkpoints is None:
        return 2
    files, errors = expand_inputs(args.paths)
    names = unique_names(files)
    output = Path(args.out)
    device = None
    if args.shard:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # on CPU, only so does it see torchrun's processes
        if state.num_processes > 1:
            share = list(range(len(files)))[state.process_index::state.num_processes]
            files, names = [files[i] for i in share], [names[i] for i in share]
            errors = errors if state.is_main_process else []
            output = output / f"shard-{state.process_index}"
        device = str(state.device)
    pipe = KaryotypePipeline.from_pretrained(checkpoints, device=device)
    with tqdm(total=len(files), unit="metaphase", disable=args.quiet) as bar:
        def progress(done, total, name):
            bar.set_postfix_str(name)
            bar.update(1)

        specimen = pipe(files, study=args.study, progress=progress, specimen_id=args.specimen_id, names=names)
    specimen.errors[:0] = errors
    write_outputs(specimen, output)
    for error in specimen.errors:
        print(f"skipped {error['error']}", file=sys.stderr)
    print(f"{specimen.karyotype or 'no karyotype'}  ({len(specimen.analysed)} of {len(specimen.cells)} metaphases "
          f"analysed; report in {output})")
    for reason in specimen.refer:
        print(f"  refer: {reason}")
    return 0 if specimen.cells else 1


def calibrate(args: argparse.Namespace) -> int:
    """Choose the aberration heads' operating points on your lab's own normal metaphases (one folder per specimen)."""
    import shutil

    from tqdm import tqdm

    from .aberrations import OPERATING_POINT_FILE
    from .aberrations.calibration import fewest_cells, operating_point
    from .pipeline import KaryotypePipeline

    checkpoints = checkpoints_folder(args)
    if checkpoints is None:
        return 2
    output = Path(args.out)
    if output.resolve() == checkpoints.resolve():
        print(f"karyohf calibrate: --out {output} is the checkpoints folder itself; name another folder for the "
              "calibrated copy", file=sys.stderr)
        return 2
    files, errors = expand_inputs(args.paths)
    names = unique_names(files)
    pipe = KaryotypePipeline.from_pretrained(checkpoints)
    if not pipe.heads:
        print(f"karyohf calibrate: {checkpoints} holds no aberration head to calibrate", file=sys.stderr)
        return 2
    with tqdm(total=len(files), unit="metaphase", disable=args.quiet) as bar:
        specimen = pipe(files, progress=lambda done, total, name: bar.update(1), names=names)
    for error in errors + specimen.errors:
        print(f"skipped {error['error']}", file=sys.stderr)
    if not specimen.cells:
        print("karyohf calibrate: no metaphase could be analysed; nothing was written", file=sys.stderr)
        return 1
    folder_of = {name: str(path.parent) for name, path in zip(names, files)}
    specimens = [folder_of[cell.name] for cell in specimen.cells]
    shutil.copytree(checkpoints, output, dirs_exist_ok=True)
    if len(specimen.cells) < fewest_cells(args.false_call_rate):
        print(f"warning: {len(specimen.cells)} metaphases leave no cell that may be called at a specimen false-call "
              f"rate of {args.false_call_rate}: each threshold sits above every normal cell's score; "
              f"{fewest_cells(args.false_call_rate)} or more let it sit where the normal cells end", file=sys.stderr)
    for head in pipe.heads:
        point = {"cell_threshold": {}, "chosen_on": {}}
        for key in head.aberrations:
            threshold, chosen = operating_point([cell.aberration_scores[key] for cell in specimen.cells], specimens,
                                                args.false_call_rate)
            point["cell_threshold"][key] = threshold
            point["chosen_on"][key] = ({"cells chosen on": "your normal metaphases, each folder a specimen"}
                                       | chosen | {"command": "karyohf calibrate"})
            print(f"{head.name} {key}: cell threshold {threshold:.4f} (was {head.cell_thresholds[key]:.4f}), "
                  f"{chosen['cells called']} of {chosen['cells']} normal metaphases called")
        (output / head.name / OPERATING_POINT_FILE).write_text(json.dumps(point, indent=2) + "\n")
    print(f"calibrated checkpoints written to {output}: karyohf predict ... --checkpoints {output}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """One held-out real metaphase (validation split of the shared data) through the pipeline."""
    from .data import load_metaphases, split_metaphases
    from .detection.evaluation import count_matches
    from .pipeline import KaryotypePipeline

    validation = split_metaphases(load_metaphases())["validation"]
    ids = validation["image_id"]
    if args.image_id not in (None, *ids):
        print(f"image {args.image_id} is not in the validation split", file=sys.stderr)
        return 2
    metaphase = validation[ids.index(args.image_id) if args.image_id else 0]
    checkpoints = checkpoints_folder(args)
    if checkpoints is None:
        return 2
    pipe = KaryotypePipeline.from_pretrained(checkpoints)
    cell = pipe.analyze_cell(metaphase["image"], name=f"{metaphase['image_id']}.jpg")
    print(f"metaphase {metaphase['image_id']} (validation split): {cell.chromosome_count} chromosomes found, "
          f"{len(metaphase['boxes'])} annotated, {count_matches(cell.boxes, metaphase['boxes'])} matched at IoU 0.5")
    print(f"karyotype: {cell.karyotype}  ({cell.quality})")
    for row in cell.flags():
        if row["flagged"]:
            print(f"  chromosome {row['label']} (box {row['index']}) flagged {', '.join(row['flagged'])}: "
                  + ", ".join(f"P({name}) {row['aberrations'][name]:.2f}" for name in row["flagged"]))
    output = Path(args.out)
    output.mkdir(parents=True, exist_ok=True)
    cell.karyogram().save(output / "karyogram.png")
    cell.overlay().save(output / "overlay.png")
    print(f"karyogram and overlay written to {output}/")
    return 0


def push(args: argparse.Namespace) -> int:
    """Upload a checkpoint folder (or with --bundle, a folder of them) to a Hub model repository, its card included."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    from .hub import NotACheckpointError, push as push_folder

    try:
        url = push_folder(args.folder, args.repo_id, bundle=args.bundle, private=args.private,
                          commit_message=args.message, prune=not args.keep_remote_files)
    except NotACheckpointError as error:
        print(f"karyohf push: {error}", file=sys.stderr)
        return 2
    except OfflineModeIsEnabled:
        print("karyohf push: HF_HUB_OFFLINE is set (the Makefile sets it): unset it to reach the Hub", file=sys.stderr)
        return 2
    print(f"uploaded {args.folder} to {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karyohf", description="Automatic karyotyping with Hugging Face models")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoints", help="folder or Hub id of the checkpoints (default: $KARYOHF_CHECKPOINTS, "
                                              "then the checkout's checkpoints/)")
    commands = parser.add_subparsers(dest="command", required=True)
    predict_parser = commands.add_parser("predict", parents=[common],
                                         help="a specimen's metaphases -> karyotype, report, karyograms")
    predict_parser.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or globs")
    predict_parser.add_argument("--out", required=True, help="output folder")
    predict_parser.add_argument("--study", choices=("neoplasia", "constitutional"), default="neoplasia")
    predict_parser.add_argument("--specimen-id")
    predict_parser.add_argument("--no-shard", dest="shard", action="store_false",
                                help="do not split the inputs across accelerate's processes")
    predict_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    calibrate_parser = commands.add_parser("calibrate", parents=[common], help=calibrate.__doc__.splitlines()[0])
    calibrate_parser.add_argument("paths", nargs="+", help="normal metaphases of your lab (files, folders or globs); "
                                                           "each image's folder is taken as its specimen")
    calibrate_parser.add_argument("--out", required=True, help="folder for the calibrated copy of the checkpoints")
    calibrate_parser.add_argument("--false-call-rate", type=float, default=0.005,
                                  help="largest chance that a normal 20-cell specimen gets each aberration called")
    calibrate_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    demo_parser = commands.add_parser("demo", parents=[common], help=demo.__doc__.splitlines()[0])
    demo_parser.add_argument("--image-id", help="a validation metaphase id (default: the first)")
    demo_parser.add_argument("--out", default="demo_output")
    push_parser = commands.add_parser("push", help=push.__doc__.splitlines()[0])
    push_parser.add_argument("folder", help="a checkpoint folder (config.json, weights, README.md), or with --bundle "
                                            "the folder holding them (checkpoints/)")
    push_parser.add_argument("--repo-id", required=True, help="the Hub model repository, ORG/NAME (created if needed)")
    push_parser.add_argument("--bundle", action="store_true",
                             help="upload every checkpoint subfolder as one repository (what "
                                  "KaryotypePipeline.from_pretrained(ORG/NAME) loads)")
    push_parser.add_argument("--private", action="store_true", help="create the repository private")
    push_parser.add_argument("--message", help="commit message")
    push_parser.add_argument("--keep-remote-files", action="store_true",
                             help="keep files on the Hub that the folder does not have (default: delete them)")
    args = parser.parse_args(argv)
    return {"calibrate": calibrate, "demo": demo, "predict": predict, "push": push}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
