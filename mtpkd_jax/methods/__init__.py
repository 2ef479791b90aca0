"""The methods (MT-PKDOT, PKDOT, the baselines, CMKT) and the stages that train them.

* :mod:`~mtpkd_jax.methods.registry`: each method's distillation terms and config entries;
  :mod:`~mtpkd_jax.methods.params`: their typed parameters.
* :mod:`~mtpkd_jax.methods.settings`: every stage's typed settings; both are read with
  :mod:`~mtpkd_jax.methods.typed`.
* :mod:`~mtpkd_jax.methods.objective`: a method's named loss terms, summed in one place.
* :mod:`~mtpkd_jax.methods.context`: a run's :class:`~mtpkd_jax.methods.Context`, its
  :class:`~mtpkd_jax.methods.Memo` and a planned :class:`~mtpkd_jax.methods.Stage`.
* :mod:`~mtpkd_jax.methods.networks`: the network of each stage.
* :mod:`~mtpkd_jax.methods.backbones`: the teachers' backbones and their tokens.
* One module per stage: :mod:`~mtpkd_jax.methods.unimodal`, :mod:`~mtpkd_jax.methods.joint`,
  :mod:`~mtpkd_jax.methods.alignment`, :mod:`~mtpkd_jax.methods.students`, CMKT's
  :mod:`~mtpkd_jax.methods.cmkt`.
* :mod:`~mtpkd_jax.methods.graph`: the stage graph, one table of stage kinds (what each
  needs, what trains it); :func:`~mtpkd_jax.methods.graph.plan` lists the stages a list of
  methods needs and :func:`~mtpkd_jax.methods.graph.train` trains them in order.
* :mod:`~mtpkd_jax.methods.evaluation`: predictions and scores.

The names below are imported from their modules on first use.
"""

from mtpkd_jax import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  {
    "alignment": ("train_alignment",),
    "cmkt": ("train_cmkt",),
    "context": ("Context", "Memo", "Stage"),
    "evaluation": ("metric_names", "predict", "scores"),
    "joint": ("train_joint",),
    "networks": ("Alignment", "JointTeacher", "Student", "Unimodal", "VisualStudent", "WeakModel"),
    "graph": ("GRAPH", "Roles", "plan", "train_stage"),
    "params": ("CMKT", "KD", "LogitKD", "MTPKDOT", "PKDOT", "StructuralOT"),
    "registry": (
      "METHODS",
      "Method",
      "check_methods",
      "get_method",
      "method_params",
      "parse_variant",
    ),
    "settings": ("Stages", "stages_from_config"),
    "students": ("train_student",),
    "unimodal": ("train_unimodal",),
  },
)
