#!/usr/bin/env bash
# Installs Autobahn|Testsuite (wstest) into a cache dir, idempotently, so that
# scripts/conformance.sh needs nothing outside this repository.
#   scripts/autobahn-install.sh CACHE_DIR PYTHON2.7   -> prints the path of wstest
# The suite runs only on CPython 2.7. Its last working dependency set is pinned
# below (upstream crossbario/autobahn-testsuite requirements.txt and Dockerfile,
# plus the transitive versions pip 20.3.4 resolves on 2.7.18), all from PyPI.
# A stamp keyed on the pins makes later runs skip the install.
set -euo pipefail
dir=$1 py2=$2

PINS='autobahntestsuite==25.10.1 autobahn==0.10.9 txaio==2.1.0 Twisted==19.10.0
incremental==16.10.1 zope.interface==4.6.0 pyOpenSSL==19.1.0 cryptography==3.3.2
service-identity==18.1.0 pyasn1==0.5.1 pyasn1-modules==0.3.0 Jinja2==2.11.3
MarkupSafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0 unittest2==1.1.0 linecache2==1.0.0
traceback2==1.4.0 six==1.16.0 attrs==21.4.0 Automat==22.10.0 cffi==1.15.1
pycparser==2.21 constantly==15.1.0 enum34==1.1.10 hyperlink==21.0.0 idna==2.10
ipaddress==1.0.23 PyHamcrest==1.10.1 typing==3.10.0.0 ujson==2.0.3 wsaccel==0.6.6'
stamp="$dir/.installed-$(printf '%s' "$PINS" | sha256sum | cut -c1-12)"
wstest="$dir/py27/bin/wstest"

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock -w 600 9 || { echo "autobahn-install: $dir/.lock held for 600 s" >&2; exit 2; }
if [ -f "$stamp" ] && "$wstest" --autobahnversion >/dev/null 2>&1; then
  echo "$wstest"; exit 0
fi

echo "autobahn-install: installing wstest into $dir (python2: $py2)" >&2
rm -rf "$dir/py27" "$dir/tool" "$dir"/.installed-*
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
# virtualenv 20.21.1 is the last release that can still create a Python 2.7
# env (it seeds pip 20.3.4, setuptools 44.1.1, wheel 0.37.1).
python3 -m venv "$dir/tool"
"$dir/tool/bin/pip" install -q 'virtualenv==20.21.1' >&2
"$dir/tool/bin/virtualenv" -q -p "$py2" "$dir/py27" >&2
printf '%s\n' $PINS >"$dir/constraints.txt"
pip=("$dir/py27/bin/pip" install -q -c "$dir/constraints.txt")
# Upstream Dockerfile order: incremental and the TLS stack first, then Twisted
# without build isolation. The 25.10.1 sdist lacks its requirements.txt (empty
# install_requires), so every dependency is named.
"${pip[@]}" incremental pyOpenSSL cryptography >&2
"${pip[@]}" --no-build-isolation Twisted >&2
"${pip[@]}" --no-build-isolation autobahntestsuite 'autobahn[twisted,accelerate]' txaio \
  Jinja2 MarkupSafe Werkzeug klein service-identity unittest2 six >&2
"$wstest" --autobahnversion >&2
touch "$stamp"
echo "$wstest"
