"""The methods (MT-PKDOT, PKDOT, the baselines, CMKT) and the stages that train them.

* :mod:`~mtpkd_jax.methods.registry`: each method's distillation terms and config entries.
* :mod:`~mtpkd_jax.methods.objective`: a method's named loss terms, summed in one place.
* :mod:`~mtpkd_jax.methods.context`: a run's :class:`~mtpkd_jax.methods.Context` and its
  :class:`~mtpkd_jax.methods.Memo`.
* :mod:`~mtpkd_jax.methods.networks`: the network of each stage.
* :mod:`~mtpkd_jax.methods.backbones`: the teachers' backbones and their tokens.
* One module per stage: :mod:`~mtpkd_jax.methods.unimodal`, :mod:`~mtpkd_jax.methods.joint`,
  :mod:`~mtpkd_jax.methods.alignment`, :mod:`~mtpkd_jax.methods.students`, CMKT's
  :mod:`~mtpkd_jax.methods.cmkt`.
* :mod:`~mtpkd_jax.methods.plan` and :mod:`~mtpkd_jax.methods.stages`: the stages a list of
  methods needs, and :func:`~mtpkd_jax.methods.stages.train`, which trains them in order.
* :mod:`~mtpkd_jax.methods.evaluation`: predictions and scores.

The names below are imported from their modules on first use.
"""

from mtpkd_jax import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  {
    "alignment": ("train_alignment",),
    "cmkt": ("train_cmkt",),
    "context": ("Context", "Memo"),
    "evaluation": ("metric_names", "predict", "scores"),
    "joint": ("train_joint",),
    "networks": ("Alignment", "JointTeacher", "Student", "Unimodal", "WeakModel"),
    "plan": ("Plan",),
    "registry": ("METHODS", "Method", "check_methods", "get_method", "parse_variant"),
    "students": ("train_student",),
    "unimodal": ("train_unimodal",),
  },
)
