import subprocess
import sys
from pathlib import Path

from course_utils.doctor import Finding, format_table, prerequisite_findings


def test_prerequisites_pass_on_the_course_machine():
    assert all(f.ok for f in prerequisite_findings()), format_table(prerequisite_findings())


def test_table_shows_the_fix_only_for_failures():
    table = format_table([Finding("a", True, "fine", "never shown"), Finding("b", False, "absent", "install b")])
    assert "never shown" not in table and "install b" in table and "MISSING" in table


def test_doctor_runs_with_the_standard_library_only():
    # -S -I: no site-packages, as before `make setup` has installed anything
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-S", "-I", "-c",
                           "import sys; sys.path.insert(0, '.'); from course_utils.doctor import main; "
                           "sys.exit(main(prereqs_only=True))"], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Java >= 17" in done.stdout


def test_the_doctor_ends_with_a_verdict_and_a_next_step():
    from course_utils.doctor import verdict

    assert verdict([Finding("a", True, "fine", "")]).startswith("READY for every lesson. Next: lesson 00")
    missing = verdict([Finding("Java", False, "absent", "install java")])
    assert missing.startswith("NOT READY: 1 required check(s) failed (Java)") and "then run this check again" in missing
    assert "absent (optional)" not in verdict([Finding("GPU", False, "none", "", level="optional")])


def test_the_doctor_names_a_socket_path_that_is_too_long(monkeypatch, tmp_path):
    from course_utils import doctor

    monkeypatch.setattr(doctor, "short_temp_dir", lambda prefix: (tmp_path / ("x" * 120)).mkdir() or tmp_path / ("x" * 120))
    finding = doctor._check_socket_paths()
    assert not finding.ok and "AF_UNIX path too long" in finding.detail and "TMPDIR" in finding.fix
