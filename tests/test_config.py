import pytest

from directanimator.config import Config, CuesConfig, dump_config, from_dict, load_config
from directanimator.errors import InputError


def test_defaults_and_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cues:\n  size: 256\n  pose:\n    mode: gray\n")
    cfg = load_config(p)
    assert cfg.cues.size == 256 and cfg.cues.pose.mode == "gray"
    assert cfg.cues.face.margin == CuesConfig().face.margin  # untouched sections keep defaults


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cues:\n  pose:\n    cutof: 0.1\n")
    with pytest.raises(InputError, match="unknown config key 'cues.pose.cutof'"):
        load_config(p)


@pytest.mark.parametrize("data, message", [
    ({"cues": {"size": "big"}}, "must be int"),
    ({"cues": {"pose": {"mode": "sepia"}}}, "must be one of"),
    ({"cues": {"face": {"enlarge_and_center": 1}}}, "true or false"),
    ({"cues": {"size": 100}}, "multiple of 8"),
    ({"cues": 3}, "must be a mapping"),
])
def test_bad_values(data, message):
    with pytest.raises(InputError, match=message):
        from_dict(Config, data)


def test_round_trip(tmp_path):
    cfg = from_dict(Config, {"cues": {"size": 128, "location": {"mode": "hard", "grid_cell": 8}}})
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cues: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)


def test_old_absolute_pose_cutoff_is_read_as_the_same_filter(tmp_path):
    """Before 0.2 `cues.pose.cutoff` was cycles per pixel of the working size: an old config keeps
    its filter (cutoff_cycles = cutoff x size)."""
    from directanimator.config import load_config

    path = tmp_path / "old.yaml"
    path.write_text("cues:\n  size: 64\n  pose:\n    cutoff: 0.04\n")
    assert load_config(path).cues.pose.cutoff_cycles == pytest.approx(2.56)
    path.write_text("cues:\n  pose:\n    cutoff_cycles: 0\n")
    with pytest.raises(InputError, match="cutoff_cycles must be > 0"):
        load_config(path)
