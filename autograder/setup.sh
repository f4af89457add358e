#!/usr/bin/env bash
# Gradescope image setup (runs once, as root, when the image is built): a virtual environment with the pinned Python
# packages, the unprivileged user the worker runs as, and the hidden fixtures built with a fresh random seed, readable
# by root only.
#
# Works on Gradescope's Ubuntu 22.04 image (Python 3.10) and on images whose system Python refuses pip installs
# (PEP 668: Ubuntu 24.04, Debian 12): nothing is installed into the system Python. Settings (environment):
#   AUTOGRADER_ROOT   the autograder folder (default /autograder; this script is $AUTOGRADER_ROOT/source/setup.sh)
#   LMKIT_PYTHON      the interpreter the environment is made from (default /usr/bin/python3)
set -euo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
source_dir="$root/source"
venv="$root/lmkit-venv"
python="${LMKIT_PYTHON:-/usr/bin/python3}"
export DEBIAN_FRONTEND=noninteractive TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1
step() { echo "[setup ${SECONDS}s] $*"; }
chmod go-rwx "$source_dir"  # the judge, the reference and (soon) the fixtures: root only from the start

if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    step "installing python3 and python3-venv with apt"
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv >/dev/null
fi
step "virtual environment $venv ($("$python" --version 2>&1))"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q -r "$source_dir/requirements-gradescope.txt"

# The worker's user, with the options of create_user in autograder/judge/users.py.
id -u student >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin student

step "building the hidden fixtures"
cd "$source_dir"
"$venv/bin/python" -m autograder fixtures --out "$source_dir/dist/fixtures"

# Judge sources, reference solution and fixtures: root only. The worker (user student) runs the environment's
# interpreter, so the environment and the folders above it stay readable.
chown -R root:root "$source_dir"
chmod -R go-rwx "$source_dir"
chmod -R a+rX "$venv"
chmod a+x "$root"
chmod 755 "$root/run_autograder" 2>/dev/null || true
step "done"
