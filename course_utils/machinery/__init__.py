"""The course's machinery, apart from what lessons import: grading, the grade commands, releasing
exercises, and running and storing notebooks. Lessons never import from here; exercises use
it only through their grader, `course_utils.checks`.
"""
