"""The kit tests run TensorFlow with the worker's kernel settings, set before anything imports it: fixtures recorded
in process (`autograder.recording.record`) must see the kernels a graded submission runs on."""

import os

from autograder.judge.runner import KERNEL_ENVIRONMENT

os.environ.update(KERNEL_ENVIRONMENT)
