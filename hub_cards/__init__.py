"""karyohf's model-card templates (`karyohf.cards`), installed as the package data `karyohf.hub_cards`.

The repository keeps them here, at its top level; pyproject.toml maps this folder into the package.
"""
