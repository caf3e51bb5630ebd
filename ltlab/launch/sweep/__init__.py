"""Sweeps: the plan (presets x grid x seeds -> runs of one or two stages, validated before anything runs),
executors (``local`` worker processes with GPU packing, submitit's ``slurm`` and ``submitit_local``), the
status of a sweep read from its run directories, and the results tables. Every run goes through
:func:`ltlab.launch.execute.execute`. Public through :mod:`ltlab.batch` and ``python -m ltlab sweep``."""
