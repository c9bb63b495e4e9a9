"""Publishing checkpoints on the Hugging Face Hub: one checkpoint folder as a model repository, or the whole folder
of checkpoints as one repository whose subfolders are the models (the layout `KaryotypePipeline.from_pretrained`
loads from a Hub id).

    karyohf push checkpoints/topvit-chromid --repo-id ORG/topvit-chromid
    karyohf push checkpoints --bundle --repo-id ORG/karyohf [--private]

The folder goes up as it is, with `HfApi.upload_folder`: its README.md is the project's card (`karyohf.cards`), not
the template card `push_to_hub` would write over it. Files on the Hub that the folder no longer has are deleted
(`prune=False` keeps them), so the repository holds exactly the folder.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

# Never uploaded: caches a checkpoint folder can pick up when its code files are imported or edited.
IGNORE_PATTERNS = ["__pycache__/*", "**/__pycache__/*", "*.pyc", "**/*.pyc", ".DS_Store", "**/.DS_Store",
                   ".ipynb_checkpoints/*", "**/.ipynb_checkpoints/*"]
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class NotACheckpointError(ValueError):
    """The folder given to push is not what it was meant to be (a checkpoint, or a folder of them)."""


def check_checkpoint(folder: str | Path) -> Path:
    """The folder if it is a saved checkpoint with its card: config.json, weights and a README.md that parses."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotACheckpointError(f"{folder} is not a folder")
    if not (folder / "config.json").is_file():
        hint = (" It holds checkpoint folders: pass --bundle to upload them as one repository."
                if any((child / "config.json").is_file() for child in folder.iterdir() if child.is_dir()) else "")
        raise NotACheckpointError(f"{folder} is not a checkpoint: no config.json in it (a checkpoint is what "
                                  f"save_pretrained writes: config.json, model.safetensors, a README.md card).{hint}")
    if not any((folder / name).is_file() for name in WEIGHTS):
        raise NotACheckpointError(f"{folder} is not a checkpoint: no weights ({' / '.join(WEIGHTS)}) in it")
    check_card(folder / "README.md")
    return folder


def check_bundle(folder: str | Path) -> list[Path]:
    """The checkpoint subfolders of a bundle, each checked; the identity model `KaryotypePipeline` needs must be one."""
    from .pipeline import IDENTIFIER_FOLDER

    folder = Path(folder)
    if not folder.is_dir():
        raise NotACheckpointError(f"{folder} is not a folder")
    if (folder / "config.json").is_file():
        raise NotACheckpointError(f"{folder} is a single checkpoint (it has a config.json): push it without --bundle")
    models = [child for child in sorted(folder.iterdir()) if child.is_dir() and (child / "config.json").is_file()]
    if not models:
        raise NotACheckpointError(f"{folder} holds no checkpoint folders (subfolders with a config.json)")
    if folder / IDENTIFIER_FOLDER not in models:
        raise NotACheckpointError(f"{folder} has no {IDENTIFIER_FOLDER}/config.json: KaryotypePipeline.from_pretrained "
                                  f"needs the identity model there (found {', '.join(m.name for m in models)})")
    for model in models:
        check_checkpoint(model)
    if (folder / "README.md").is_file():
        check_card(folder / "README.md")
    return models


def check_card(path: Path) -> None:
    if not path.is_file():
        raise NotACheckpointError(f"no model card {path}: write it with karyohf.cards.write_model_card (or "
                                  "refresh_model_card for an existing card) before pushing")
    try:
        ModelCard.load(path)
    except Exception as error:  # a card the Hub would reject: say so before uploading anything
        raise NotACheckpointError(f"{path} is not a valid model card: {error}") from error


def default_api():
    """A new `HfApi` (its token from $HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import HfApi

    return HfApi()


def push(folder: str | Path, repo_id: str, *, bundle: bool = False, private: bool = False, api=None,
         commit_message: str | None = None, prune: bool = True) -> str:
    """Upload a checkpoint folder (or with `bundle`, a folder of checkpoints) to the Hub model repository `repo_id`,
    created if needed (`private` applies to a new repository only). Returns the repository's URL.

    `api` is an `huggingface_hub.HfApi` (default: `default_api()`); anything with its `create_repo`,
    `upload_folder` and `upload_file` will do (the tests pass one that writes to a local folder).
    A bundle without its own README.md gets the card of `karyohf.cards.bundle_card`, uploaded after the folder.
    """
    folder = Path(folder)
    models = check_bundle(folder) if bundle else [check_checkpoint(folder)]
    api = default_api() if api is None else api
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    what = f"{len(models)} karyohf checkpoints ({', '.join(m.name for m in models)})" if bundle \
        else f"karyohf checkpoint {folder.resolve().name}"
    api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                      commit_message=commit_message or f"Upload {what}", ignore_patterns=IGNORE_PATTERNS,
                      delete_patterns="*" if prune else None)
    if bundle and not (folder / "README.md").is_file():
        from .cards import bundle_card

        api.upload_file(repo_id=repo_id, repo_type="model", path_in_repo="README.md",
                        path_or_fileobj=str(bundle_card(folder, repo_id)).encode(),
                        commit_message="Model card of the karyohf checkpoints")
    return str(url)
