"""How fast a BioVid build decodes its videos on one core and on every core, and its memory.

Dummy BioVid Part A files (:mod:`mtpkd_jax.data.builders.dummy.biovid`) are written at a
realistic size: ``videos`` copies of a moving texture of the release's 138 frames at 25 fps,
``width`` x ``height`` (the release: 1388 x 1038), a keyframe every ``keyframe_every``
frames, with their own biosignals (2816 rows). They are built with the default config (10
frames of 50-70 resized to 112 x 112, 5.5 s of signals), in a fresh process per row:

* ``1 core``: the process pinned to one core (as ``taskset -c 0`` pins it): one process
  decodes, FFmpeg's threads share the core;
* ``1 worker``: one process on every core (FFmpeg's threads may use them);
* ``N workers``: one worker process per core (the default).

Each row gives the start-up of the worker processes' forkserver (once per process, its
imports included; not in the build's time), the seconds per video, videos per second, the
speed-up over ``1 core``, the CPU time of the build's processes (summed: what load from
other processes changes least; on ``c`` cores a build takes at least its CPU over ``c``),
and the peak of the summed resident memory of the build's processes (the build, its
workers and their forkserver; pages they share are counted in each), sampled every 50 ms.
From them, :func:`estimate` gives the time of a full BioVid Part A build (8,700 videos).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from multiprocessing import forkserver
from pathlib import Path

import numpy as np

from mtpkd_jax.bench import processes

PART_A_VIDEOS = 8_700


def _build(manual_dir: str, data_dir: str, cores: list[int] | None, num_workers, queue):
  # Imported here: the measured process starts bare (spawn).
  from mtpkd_jax.data import pipeline  # noqa: PLC0415

  if cores is not None:
    os.sched_setaffinity(0, cores)
  from mtpkd_jax.data.builders import workers  # noqa: PLC0415

  builder = pipeline.builder("biovid/part_a_binary", data_dir, None, manual_dir)
  builder.schema  # noqa: B018  (the scan, outside the timing)
  start = time.perf_counter()
  if workers.check_count(num_workers) > 1:
    # The forkserver starts once per process: timed apart from the build.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([type(builder).__module__])
    forkserver.ensure_running()
    warm = context.Process(target=os.getpid)  # Waits for the forkserver's imports.
    warm.start()
    warm.join()
  start_s = time.perf_counter() - start
  with processes.TreePeak() as peak:
    start = time.perf_counter()
    report = builder.download_and_prepare(num_workers=num_workers)
    build_s = time.perf_counter() - start
  queue.put(
    {
      "units": report.units,
      "start_s": start_s,
      "build_s": build_s,
      "s_per_video": build_s / report.units,
      "videos_per_s": report.units / build_s,
      "peak_rss_mib": max(peak.mib, processes.peak_mib()),
      "cpu_s": peak.cpu_s,
    }
  )


def run(videos: int, width: int, height: int, keyframe_every: int, out_dir: Path) -> dict:
  """Writes the dummy files, builds them three ways; writes ``build_speed.json``, returns it.

  Args:
    videos: videos written (a multiple of 2: BL1 and PA4 of each subject).
    width: the videos' width (even).
    height: the videos' height (even).
    keyframe_every: frames from one keyframe to the next.
    out_dir: where the files, the builds and ``build_speed.json`` go (replaced).

  Returns:
    ``{"videos", "width", "height", "keyframe_every", "cores", "rows": [...], "estimate"}``.

  Raises:
    ValueError: on an odd or non-positive ``videos``, or an odd size.
  """
  if videos < 2 or videos % 2 or width % 2 or height % 2 or min(width, height) < 2:
    raise ValueError(
      f"`videos` must be a positive even number and the size even, got {videos} videos of "
      f"{width}x{height}."
    )
  from mtpkd_jax.data.builders import workers  # noqa: PLC0415

  cores = sorted(os.sched_getaffinity(0))
  manual_dir = out_dir / "manual"
  shutil.rmtree(manual_dir, ignore_errors=True)
  written = write_files(manual_dir, videos, width, height, keyframe_every)
  rows = []
  settings = [("1 core", cores[:1], None), ("1 worker", None, 1)]
  settings.append((f"{workers.default_count()} workers", None, None))
  for label, pinned, num_workers in settings:
    data_dir = out_dir / "tfds"
    shutil.rmtree(data_dir, ignore_errors=True)
    row = processes.in_fresh_process(_build, str(manual_dir), str(data_dir), pinned, num_workers)
    rows.append({"setting": label, **row})
  for row in rows:
    row["speedup"] = rows[0]["build_s"] / row["build_s"]
  result = {
    "videos": written,
    "width": width,
    "height": height,
    "keyframe_every": keyframe_every,
    "cores": len(cores),
    "rows": rows,
  }
  result["estimate"] = estimate(result)
  (out_dir / "build_speed.json").write_text(json.dumps(result, indent=1))
  return result


def write_files(
  manual_dir: Path, videos: int, width: int, height: int, keyframe_every: int = 12
) -> int:
  """Dummy BioVid Part A files whose videos are copies of one :func:`texture` video.

  Decoding a copy costs what decoding its own video would; writing each would take long.

  Args:
    manual_dir: the manual folder (written into).
    videos: samples, about (BL1 and PA4 of up to 8 per subject and class).
    width: the videos' width (even).
    height: the videos' height (even).
    keyframe_every: frames from one keyframe to the next.

  Returns:
    The number of samples written.
  """
  from mtpkd_jax.data.builders.dummy import biovid  # noqa: PLC0415

  subjects = max(1, videos // 16)
  per_class = max(1, videos // (2 * subjects))
  biovid.write(manual_dir, subjects=subjects, samples_per_class=per_class, frames=1)
  video = manual_dir / "texture.mp4"
  biovid.write_video(video, texture(width, height), keyframe_every=keyframe_every)
  for path in (manual_dir / "PartA" / "video").glob("*/*.mp4"):
    shutil.copyfile(video, path)
  return subjects * per_class * 2


def texture(width: int, height: int, frames: int = 138, seed: int = 0) -> np.ndarray:
  """A moving texture: smooth blobs and fine grain drifting a pixel a frame, uint8 RGB.

  Returns:
    ``[frames, height, width, 3]``.
  """
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 200, (height // 16 + 2, width // 16 + frames // 16 + 2, 3))
  blobs = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1).astype(np.uint8)
  grain = rng.integers(0, 40, blobs.shape, dtype=np.uint8)
  canvas = blobs + grain
  return np.stack([canvas[:height, i : i + width] for i in range(frames)])


def estimate(result: dict) -> dict:
  """Hours of a full BioVid Part A build at this video size on 2 and on 16 cores.

  On 2 cores: the measured seconds per video of the build on every core here when this
  machine has 2, else the one-core seconds over 2 times the measured parallel efficiency.
  On 16: the one-core seconds per video over 16 times the parallel efficiency measured here
  (speed-up over cores); an estimate: memory bandwidth and disks may not scale so far.
  """
  one, every = result["rows"][0], result["rows"][-1]
  # At most 1: a contended one-core row can make it look higher.
  efficiency = min(1.0, every["speedup"] / result["cores"]) if result["cores"] > 1 else 1.0
  hours = {}
  for cores in (2, 16):
    if cores == result["cores"]:
      seconds = every["s_per_video"]
    else:
      seconds = one["s_per_video"] / (cores * efficiency)
    hours[f"{cores}_cores_h"] = PART_A_VIDEOS * seconds / 3600
  return {"parallel_efficiency": efficiency, **hours}


def markdown(result: dict) -> str:
  """The rows as a table, and the estimate."""
  lines = [
    f"BioVid Part A build (default config: 10 frames of 50-70 at 112 x 112) of "
    f"{result['videos']} dummy videos of 138 frames at {result['width']} x {result['height']}, "
    f"a keyframe every {result['keyframe_every']}, on a machine of {result['cores']} cores; "
    "one fresh process per row:",
    "",
    "| setting | start-up (s) | build (s) | s / video | videos / s | speed-up over 1 core "
    "| CPU (s) | peak RSS (MiB) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['setting']} | {r['start_s']:.1f} | {r['build_s']:.1f} | {r['s_per_video']:.3f} "
      f"| {r['videos_per_s']:.2f} | {r['speedup']:.2f}x | {r['cpu_s']:.1f} "
      f"| {r['peak_rss_mib']:.0f} |"
    )
  e = result["estimate"]
  lines += [
    "",
    f"Full Part A ({PART_A_VIDEOS} videos) at this size: {e['2_cores_h'] * 60:.1f} min on 2 "
    f"cores, {e['16_cores_h'] * 60:.1f} min on 16 (one-core speed over 16 x the parallel "
    f"efficiency measured here, {e['parallel_efficiency']:.2f}, at most 1).",
  ]
  return "\n".join(lines)
