"""Build time (imports TensorFlow and the reference solution): recording the hidden values, the in-process
harness, the Gradescope zip. Never imported by the judge."""
