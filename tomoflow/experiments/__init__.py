"""The seed paper's experiments (seed 000 Table 2 and leave-one-out discovery), built on the library and kept
apart from it: only the pipeline (which registers their stage types) and the command line import this package."""
