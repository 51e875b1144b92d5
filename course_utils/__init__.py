"""course_utils: the plumbing behind the serving course.

Each lesson introduces the functions it uses; every public function's docstring
ends with the lesson that introduces it. The package import is deliberately
light (no torch) so that `python -m course_utils doctor` works before the
course's dependencies are installed.
"""

__version__ = "0.1.0"
