#!/usr/bin/env bash
# QLoRA vs LoRA on a GPU machine: peak GPU memory and tokens/s on a 7B-shape Llama, same run.
#   bash bench/gpu_train.sh [steps]
# The machine needs torch (CUDA), transformers, peft and accelerate. bitsandbytes is installed from
# a wheel in wheels/ when there is one (BNB_WHEEL=path overrides), else from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-8}"
python -c "import bitsandbytes" 2>/dev/null || {
  wheel="${BNB_WHEEL:-$(ls wheels/bitsandbytes-*.whl 2>/dev/null | head -1 || true)}"
  if [ -n "$wheel" ]; then pip install -q --no-deps "$wheel"; else pip install -q "bitsandbytes>=0.50"; fi
}
pip install -q --no-deps -e . 2>/dev/null || true
out="$(mktemp)"
for method in qlora lora; do
  python bench/gpu_train.py --method "$method" --steps "$steps" | tee -a "$out"
done
python - "$out" <<'PY'
import json, sys
runs = {r["method"]: r for r in map(json.loads, open(sys.argv[1]))}
q, l = runs["qlora"], runs["lora"]
print(f"{q['gpu']}: QLoRA {q['peak_gpu_gib']} GiB peak, {q['tokens_per_s']:.0f} tokens/s; "
      f"LoRA {l['peak_gpu_gib']} GiB peak, {l['tokens_per_s']:.0f} tokens/s")
print(f"QLoRA uses {q['peak_gpu_gib'] / l['peak_gpu_gib']:.2f}x LoRA's memory "
      f"at {q['tokens_per_s'] / l['tokens_per_s']:.2f}x its speed")
PY
