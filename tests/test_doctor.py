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
