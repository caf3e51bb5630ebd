"""Starting runs from outside Python: the one command line (:mod:`.cli`, ``python -m ltlab``), presets
(:mod:`.presets`), the one papermill call (:mod:`.notebook`), the run's identity (:mod:`.identity`), the one
stage executor with its result and heartbeat (:mod:`.execute`), sweeps (:mod:`.sweep`) and the local
sweep's worker process (:mod:`.worker`). Nothing below this package imports it.

Nothing is imported here, so ``python -m ltlab.launch.worker`` and ``import ltlab.launch.identity`` load only
what they use."""
