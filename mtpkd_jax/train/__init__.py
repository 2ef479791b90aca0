"""Model-agnostic training infrastructure.

* `parallel`: meshes, `data_parallel` (shard_map) and `pmap_step` over one per-device step.
* `distributed`: starting `jax.distributed`, process 0, barriers, a process's batch rows.
* `state`: `TrainState` (params, batch_stats, opt_state, step).
* `step`: `make_train_step(loss_fn)`, the per-device update.
* `checkpoint`: per-stage orbax checkpoints, best copy, stage output, `load_stage_output`.
* `loop`: `fit`, the host loop of one stage.
* `metrics`, `writers`: evaluation metrics and the TensorBoard/JSON-lines writer.
"""
