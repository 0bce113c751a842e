#!/usr/bin/env bash
# Makes the virtual environment the transformers tests run in (tests/parity): /usr/bin/python3's
# own packages (Debian's torch 1.13, numpy, h5py) plus a pinned Hugging Face transformers.
#
#   launch/setup_transformers.sh     (launch/setup.sh --tests runs it before configuring)
#
# The venv lives in $STRAND_TRANSFORMERS_VENV (default ~/.cache/strand-transformers) and is
# reused while it imports the pinned version. Without a network (or with
# STRAND_TRANSFORMERS_VENV=none) it prints one line and succeeds: the tests that need
# transformers are then skipped (exit 77), never failed.
set -uo pipefail

venv="${STRAND_TRANSFORMERS_VENV:-$HOME/.cache/strand-transformers}"
# transformers 4.49 is the last minor version whose GPT-2 imports over Debian's torch 1.13
# (4.50 and later import torch.distributed.tensor, which torch 2 added). Everything pip adds is
# pinned, so that a later release of a dependency cannot change the run.
pins=(transformers==4.49.0 tokenizers==0.21.4 safetensors==0.8.0 huggingface_hub==0.36.2 hf-xet==1.8.0
      filelock==4.3.2 fsspec==2026.9.0 packaging==26.4 regex==2026.11.19 tqdm==4.70.1)
version="${pins[0]#transformers==}"

skip() {
  echo "setup: transformers not installed ($1); the tests that need it (parity.transformers_*) will be skipped"
  exit 0
}
[[ "$venv" == "none" ]] && skip "STRAND_TRANSFORMERS_VENV=none"
[[ -x /usr/bin/python3 ]] || skip "no /usr/bin/python3"

# The check both for reuse and after installing: the pinned version imports GPT2LMHeadModel
# over the system torch (transformers silently hides its models when torch is too old).
works() {
  "$venv/bin/python" - "$version" <<'EOF' >/dev/null 2>&1
import sys
import transformers
from transformers import GPT2LMHeadModel  # noqa: F401
from transformers.utils import is_torch_available
sys.exit(0 if transformers.__version__ == sys.argv[1] and is_torch_available() else 1)
EOF
}
works && exit 0

echo "setup: installing ${pins[*]} into $venv (over /usr/bin/python3's torch)"
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv" || skip "python3 -m venv failed (apt-get install python3-venv)"
# Short timeouts: without a network this gives up in seconds instead of pip's minutes.
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 15 --retries 1 \
     "${pins[@]}" >"$venv/pip.log" 2>&1; then
  tail -n 1 "$venv/pip.log" >&2
  rm -rf "$venv"
  skip "pip install failed; no network?"
fi
works || { rm -rf "$venv"; skip "transformers $version does not import GPT2LMHeadModel over the system torch"; }
echo "setup: transformers $version in $venv"
