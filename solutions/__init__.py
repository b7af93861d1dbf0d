"""Reference implementations of the course's exercises: plain, importable functions.

Each chapter's notebook is generated from these (`NN_chapter.py` beside them builds it), and
its graders compare learners' code with them.
"""
