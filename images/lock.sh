#!/bin/sh
# Resolve an image's requirements.in into its requirements.lock inside the image's own base
# (Debian + python3-venv), so the lock holds exactly what pip picks there.
#   images/lock.sh student        the CPU image
#   images/lock.sh student-gpu    the GPU image: the CPU pins minus `mxnet`, held to the CPU lock's versions
# Packages matching images/lock-exclude.txt are left out: optional extras that only cost. rfc3987-syntax
# (jsonschema's `iri` format check, which no Jupyter schema uses) builds ~35 Lark parsers at import,
# about 1.4 CPU-s in every jupyter server, nbgrader run and hub start. Images install --no-deps.
set -eu
name=$1
here=$(cd "$(dirname "$0")" && pwd)
base=${BASE_IMAGE:-debian:bookworm-slim}
if [ "$name" = student ]; then
  inputs="-r /images/student/requirements.in"
else
  inputs="-r /tmp/common.in -r /images/$name/requirements.in -c /tmp/common.lock"
fi
certs=${EXTRA_CA_CERTS:-/usr/local/share/ca-certificates}  # networks that intercept TLS
docker run --rm --label org.d2lhub.instance=lock-$name -v "$here:/images:ro" -v "$certs:/usr/local/share/ca-certificates/extra:ro" \
  -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt -e PIP_DISABLE_PIP_VERSION_CHECK=1 "$base" sh -ec "
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends python3-venv ca-certificates >/dev/null 2>&1
  update-ca-certificates >/dev/null 2>&1
  grep -v '^mxnet==' /images/student/requirements.in > /tmp/common.in
  grep -v '^mxnet==' /images/student/requirements.lock > /tmp/common.lock
  python3 -m venv /tmp/venv
  /tmp/venv/bin/pip install -q --no-cache-dir $inputs >&2
  echo '# Resolved from requirements.in by \`make lock-images\` (pip freeze in the base image). Do not edit by hand.'
  /tmp/venv/bin/pip freeze | grep -vE \"\$(cat /images/lock-exclude.txt)\"
" > "$here/$name/requirements.lock.partial"
mv "$here/$name/requirements.lock.partial" "$here/$name/requirements.lock"
