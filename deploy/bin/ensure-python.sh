#!/usr/bin/env bash
# A Python >= 3.12 for the Django 6 test pass (Django 6 needs it): prints its
# path, installing one with apt-get when the machine has none.
#
# Looked for, in this order: $DJANGO6_PYTHON; python3.13 and python3.12 on
# PATH; pyenv's versions 3.12 and later ($PYENV_ROOT, default ~/.pyenv),
# newest first.  A candidate counts only if it runs and has venv and
# ensurepip: a pyenv shim of a version that is not selected exits 127, and
# Debian's interpreter comes without venv until its -venv package is in.
#
# None found: apt-get update, then the newest of python3.13 / python3.12 that
# `apt-cache policy` has a candidate for, with its -venv package.  None
# installable either (Debian bookworm has 3.11 only):
#   CI=true   exit 1: CI must run the Django 6 pass;
#   otherwise exit 3 with a warning: the Makefile skips the pass.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

usable() {  # interpreter -> 0 if it is Python >= 3.12 with venv and ensurepip
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

candidates() {
  [ -n "${DJANGO6_PYTHON:-}" ] && echo "$DJANGO6_PYTHON"
  local name
  for name in python3.13 python3.12; do
    command -v "$name" || true
  done
  local root="${PYENV_ROOT:-$HOME/.pyenv}" version
  # Newest first: 3.13.x before 3.12.x, by version number.
  for version in $(ls -1 "$root/versions" 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])\.[0-9]+$' \
                   | sort -t. -k1,1nr -k2,2nr -k3,3nr); do
    echo "$root/versions/$version/bin/python"
  done
}

found() {
  local candidate
  while read -r candidate; do
    if [ -n "$candidate" ] && usable "$candidate"; then echo "$candidate"; return 0; fi
  done < <(candidates)
  return 1
}

on_ci() { case "${CI:-}" in 1|true|TRUE|True|yes) return 0 ;; *) return 1 ;; esac; }

if found; then exit 0; fi

# Nothing here: what apt offers (the newest first).
if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; }; then
  echo "ensure-python: no Python >= 3.12 here; asking apt" >&2
  $SUDO apt-get update -qq >&2
  for name in python3.13 python3.12; do
    candidate=$(apt-cache policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
      echo "ensure-python: install $name $candidate and $name-venv" >&2
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$name" "$name-venv" >/dev/null
      if found; then exit 0; fi
      echo "ensure-python: $name installed, yet no usable Python >= 3.12 (venv, ensurepip)" >&2
      exit 1
    fi
  done
fi

message="no Python >= 3.12 for the Django 6 test pass: none runs as python3.13 or python3.12 \
on PATH or under ${PYENV_ROOT:-$HOME/.pyenv}/versions, and apt offers neither python3.13 nor \
python3.12 (Debian bookworm has 3.11 only). Install one (e.g. pyenv install 3.12) or set DJANGO6_PYTHON."
if on_ci; then
  echo "ensure-python: CI=true and $message" >&2
  exit 1
fi
echo "ensure-python: WARNING: $message The Django 6 pass is skipped." >&2
exit 3
