"""The runtime: running a learner's code, and containing it when grading other people's.

The lowest of the course's three layers (see `[tool.importlinter]` in pyproject.toml): it
imports nothing of `graders`, `solutions` or the applications, so the learner's process,
which runs inside the sandbox, never holds a reference or a hidden test.

* `paths`: where the course's folders and packages are;
* `verdicts`: the verdicts and the error that both sides of grading share;
* `learner_code`: running a notebook's cells, and saying where learner code went wrong;
* `wire`: the messages between the grader and the learner's process, and their framing;
* `containment`: what a learner's process may see and use (bubblewrap's view, limits);
* `learner_process`: the processes that run a learner's code, inside the sandbox;
* `remote`: the grader's side of them, the learner's objects as proxies.
"""
