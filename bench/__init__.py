"""Benchmarks and the chaos run of BOBO Sync for Azure (issue 8): `python -m bench --help`.

Everything runs locally against Azurite (from the project's npm install) and the AtHoc simulator
(`tools.athoc_sim`); nothing here is imported by the function app.
"""
