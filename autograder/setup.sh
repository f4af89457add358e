#!/usr/bin/env bash
# Gradescope image setup (runs once, as root, from /autograder/source): Python packages, the unprivileged user the
# worker runs as, and the hidden fixtures built with a fresh random seed, readable by root only.
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

apt-get update -qq
apt-get install -y -qq python3 python3-pip >/dev/null
python3 -m pip install --no-cache-dir -q -r requirements-gradescope.txt

id -u student >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin student

python3 -m autograder fixtures --out /autograder/source/dist/fixtures

# Judge sources, reference solution and fixtures: root only. The worker gets its own copy of autograder/worker/.
chown -R root:root /autograder/source
chmod -R go-rwx /autograder/source
chmod 755 /autograder/run_autograder 2>/dev/null || true
