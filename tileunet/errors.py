"""The one exception type users see for bad input."""


class InputError(ValueError):
    """Bad user input: the message names the file, the problem and the fix."""

    def __init__(self, path, problem, fix):
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")
