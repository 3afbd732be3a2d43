"""Where litvision's commands run: a pool of slots on this machine (pool.py) or SLURM array tasks through
submitit (slurm.py). ``litvision reproduce`` runs its jobs there, ``litvision search`` its workers."""
