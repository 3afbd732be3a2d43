"""Reproduction of the five reports: report plans and sweeps run as ordinary ``litvision fit`` runs (on
litvision.launch's pool or SLURM), checked against the plain loop (litvision.plain), and the report that
puts each published number next to ours.

``litvision reproduce`` is the command line (``make reproduce-all``, ``make reproduce-quick``);
docs/reproduce.md describes the files it reads and writes.
"""
