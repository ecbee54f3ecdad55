"""The two axes of scripts/bench/scaling.py (its entry point: options, the axes in order, the tables and the JSON), a
module each, and how they measure:

- `measure`: Python and Arrow memory peaks, the raw rows (one per measurement), milliseconds as text
- `ops_axis`: time per trial and memory against the number of ops, in process, with a checkpoint, on the virtual
  clock and on Ray; its table and notes
- `history_axis`: `load_history` and a resume that evaluates nothing against the history length; its table and notes
"""
