"""The parts of scripts/bench/run_all.py (its entry point: options, the parts in order, run.json and the Markdown), a
module each, and what they share:

- `runner`: running a part's script (its output to a log; nothing when rendering), its command as shown, and the parts
  whose script writes its own sections (ray_tune, scaling)
- `inc`, `speculation`, `deployed`, `nncf`, `parallel`: each runs its part's scripts and renders their figures as
  sections (title, columns, rows, notes) and raw rows
- `raw`: a part's raw rows written as CSV and Arrow
- `markdown`: BENCHMARKS.md from the parts' sections
"""
