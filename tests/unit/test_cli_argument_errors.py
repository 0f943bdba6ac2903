"""Bad CLI arguments give a one-line error naming the value (argparse exit 2), before any
service starts, never a traceback (``boundaries`` parses all arguments before running a command)."""

from __future__ import annotations

import pytest

from boundaries_cli.main import build_parser

CROP = ["--crop", "0.05,0.78,0.95,0.99"]


def _fails_cleanly(argv, capsys, *needles):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)  # not main(): it would point structlog at capsys's stream
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


def test_missing_video_is_a_clean_error(tmp_path, capsys):
    missing = str(tmp_path / "nope.mp4")
    _fails_cleanly(["run", missing, *CROP], capsys, missing, "not found")
    _fails_cleanly(["ingest", missing, *CROP], capsys, missing, "not found")
    _fails_cleanly(["eval", "--video", missing, "--labels", missing, *CROP], capsys, missing)


def test_file_that_is_not_a_video_is_a_clean_error(tmp_path, capsys):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video\n")
    _fails_cleanly(["run", str(bogus), *CROP], capsys, str(bogus), "not a readable video")
    _fails_cleanly(["run", str(tmp_path), *CROP], capsys, str(tmp_path))  # a directory


def test_missing_labels_and_bad_ids_are_clean_errors(tmp_path, capsys, real_data):
    video = str(real_data / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4")
    labels = str(tmp_path / "labels.csv")
    _fails_cleanly(["eval", "--video", video, "--labels", labels, *CROP], capsys, labels, "not found")
    _fails_cleanly(["ingest", video, *CROP, "--video-id", "../../etc"], capsys, "../../etc", "UUID")
    _fails_cleanly(["dlq", "show", "not-a-uuid"], capsys, "not-a-uuid", "UUID")
    _fails_cleanly(["run", video, "--crop", "0.5,0.2,0.4,0.9"], capsys, "0.5,0.2,0.4,0.9")


@pytest.mark.parametrize("argv,needle,status", [
    (["dlq", "list"], "BOUNDARIES_DATABASE_URL", 78),  # EX_CONFIG: a setting to fix
    (["model-version", "/nonexistent/model.pt"], "/nonexistent/model.pt", 2),  # usage: checked by argparse
])
def test_configuration_and_input_errors_are_one_line_not_a_traceback(argv, needle, status):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARIES_")}
    proc = subprocess.run([sys.executable, "-m", "boundaries_cli.main", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr.strip().splitlines()[-1]
