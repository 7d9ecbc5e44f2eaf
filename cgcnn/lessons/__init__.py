"""Lessons: a question, the class's predictions, an experiment run together, and the answer shown to all.

:mod:`~cgcnn.lessons.schema` reads and checks lesson files; :mod:`~cgcnn.lessons.session` keeps a class's
lesson sessions in the run store (step, answers, the dealing of the grid); :mod:`~cgcnn.lessons.export` writes
them out for grading.
"""
