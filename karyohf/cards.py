"""Model cards: the templates in hub_cards/ filled with what a training run measured."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "hub_cards"


def write_model_card(output_dir: str | Path, template: str, **values) -> Path:
    """Render hub_cards/<template>.md with `values` into <output_dir>/README.md (the Hub's model card)."""
    path = TEMPLATES / f"{template}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model-card template {path}")
    card = Path(output_dir) / "README.md"
    card.write_text(path.read_text().format(**values))
    return card
