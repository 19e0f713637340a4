"""Benchmarks and the chaos run of BOBO Sync for Azure: `python -m bench --help`.

Figures: docs/performance.md; the chaos run: docs/verification.md#the-chaos-run.

Everything runs locally against Azurite (from the project's npm install) and the AtHoc simulator
(`tools.athoc_sim`); nothing here is imported by the function app.
"""
