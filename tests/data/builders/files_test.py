"""Finding files in a manual download folder through the layout variations users produce."""

import pytest

from mtpkd_jax.data.builders import files


def _touch(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("")
  return path


@pytest.mark.parametrize(
  "layout",
  ["PartA/video/s", "partA/video/video/s", "x/PartA/video/s", "PartA/video 2/video/s"],
)
def test_find_dir_sees_through_extra_levels_and_renames(tmp_path, layout):
  _touch(tmp_path / layout / "a.mp4")
  part = files.find_dir(tmp_path, ["PartA"])
  assert part is not None and part.name.lower() == "parta"
  video = files.find_dir(part, ["video"])
  assert [p.name for p in files.entries(video)] == ["s"]


def test_find_dir_prefers_the_shallowest_and_ignores_macos_debris(tmp_path):
  _touch(tmp_path / "__MACOSX" / "video" / "junk")
  _touch(tmp_path / "deep" / "video" / "b")
  _touch(tmp_path / "video" / "a")
  assert files.find_dir(tmp_path, ["video"]) == tmp_path / "video"
  assert files.find_dir(tmp_path, ["nothing"]) is None


def test_find_file_respects_depth(tmp_path):
  _touch(tmp_path / "a" / "b" / "c" / "samples.csv")
  assert files.find_file(tmp_path, ["samples.csv"], depth=3) is None
  assert files.find_file(tmp_path, ["samples.csv"], depth=4).parent.name == "c"


def test_archives_are_found_to_name_them(tmp_path):
  _touch(tmp_path / "PartA" / "biosignals_filtered.zip")
  assert files.archives(tmp_path, ["biosignals_filtered"])[0].name == "biosignals_filtered.zip"
