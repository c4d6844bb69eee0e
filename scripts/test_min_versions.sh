#!/usr/bin/env bash
# The minimum-versions leg: a fresh venv with every dependency at the floor pyproject.toml declares
# (`name>=X` becomes `name==X`, for the runtime dependencies and the test extra), then the whole suite.
# Run before each release and whenever a floor changes (docs/design.md, "Dependency floors").
#
#   bash scripts/test_min_versions.sh [VENV_DIR] [pytest args...]
#
# VENV_DIR defaults to a new temporary folder (removed afterwards). The floors are read from
# pyproject.toml, never listed twice: a floor in pyproject.toml is a version this leg has passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-}"
[ $# -gt 0 ] && shift
if [ -z "$venv" ]; then
    venv="$(mktemp -d)/venv"
    trap 'rm -rf "$(dirname "$venv")"' EXIT
fi
python3 -m venv "$venv"
pins="$(python3 - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["test"]
for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)(,.*)?", requirement.strip())
    if match is None:
        raise SystemExit(f"pyproject.toml: {requirement!r} has no '>=' floor; every dependency needs one")
    print(f"{match[1]}=={match[2]}")
EOF
)"
echo "minimum versions:" $pins
# torch first, alone: its floor may be a local wheel (find-links) and must not be replaced by a resolver pick.
"$venv/bin/python" -m pip install -q $(grep '^torch==' <<<"$pins")
"$venv/bin/python" -m pip install -q $pins
"$venv/bin/python" -m pip install -q --no-deps -e .
"$venv/bin/python" -m pip check
"$venv/bin/python" -m pip list --format=freeze | grep -iE "^($(sed 's/==.*//' <<<"$pins" | paste -sd'|'))=="
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
