"""The Arrow history of a run: its table (`table`), its fingerprint (`fingerprint`), a checkpoint's files and
how they are read (`files`) and written (`writer`), and the storage a run keeps its rows in (`storage`)."""

from .files import load_history, read_history

__all__ = ["load_history", "read_history"]
