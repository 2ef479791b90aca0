"""The stage graph: one table that planning, ordering and the records read."""

import dataclasses

import pytest

from experiments.configs import synthetic_cmkt, synthetic_mtpkdot
from mtpkd_jax.methods import graph, registry, settings

ROLES = graph.Roles(("video", "physio", "eda"), strong="physio")
BACKBONES = ("unimodal_video", "unimodal_physio", "unimodal_eda")


def test_every_kind_needs_only_kinds_before_it_and_has_its_settings():
  names = [kind.name for kind in graph.GRAPH]
  assert names == [f.name for f in dataclasses.fields(settings.Stages)]
  subjects = {"modality": "video", "method": "mt_pkdot", "run": None}
  for i, kind in enumerate(graph.GRAPH):
    for needed, _ in kind.needs(ROLES, subjects[kind.per]):
      assert names.index(needed) < i, (kind.name, needed)
  assert {m.kind for m in registry.METHODS.values()} | {"unimodal"} == set(graph.TRAINED_BY)


def test_the_main_jobs_plan_trains_each_shared_stage_once_before_the_students():
  methods = synthetic_mtpkdot.get_config().methods
  planned = graph.plan(methods, ROLES)
  assert [(s.name, s.needs) for s in planned] == [
    ("unimodal_video", ()),
    ("unimodal_physio", ()),
    ("unimodal_eda", ()),
    ("joint", BACKBONES),
    ("alignment", (*BACKBONES, "joint")),
    *((f"student_{m}", (*BACKBONES, "joint")) for m in ("pkd:beta=0", "pkd", "pkdot")),
    ("student_mt_pkdot", (*BACKBONES, "joint", "alignment")),
  ]


@pytest.mark.parametrize(
  "methods, names",
  [
    (("visual_only",), ["unimodal_video"]),
    (("physio_only", "visual_only"), ["unimodal_physio", "unimodal_video"]),
    (("joint_teacher",), [*BACKBONES, "joint"]),
    (("mt_pkdot:k=3",), [*BACKBONES, "joint", "alignment", "student_mt_pkdot:k=3"]),
    (("cmkt_ot", "cmkt"), ["unimodal_physio", "cmkt_cmkt_ot", "cmkt_cmkt"]),
  ],
)
def test_a_plan_holds_what_its_methods_need_and_nothing_else(methods, names):
  assert [s.name for s in graph.plan(methods, ROLES)] == names


def test_cmkt_needs_its_strong_model_alone():
  stage = graph.stage(graph.Roles(("audio", "text"), "text"), "cmkt", "cmkt")
  assert (stage.name, stage.needs) == ("cmkt_cmkt", ("unimodal_text",))
  methods = synthetic_cmkt.get_config().methods
  assert all(
    s.kind in ("unimodal", "cmkt") for s in graph.plan(methods, graph.Roles(("audio", "text")))
  )
