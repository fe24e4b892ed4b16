"""Built-in domain packs, installed as the package ``judge_packs``.

They register through the ``judge.packs`` entry-point group exactly as a third-party
distribution would: each entry point names the directory holding a ``pack.yaml``.
"""

from pathlib import Path

_HERE = Path(__file__).parent

healthcare = _HERE / "healthcare"
legal = _HERE / "legal"
finance = _HERE / "finance"
