# vLLM for Shadowdesk on a GPU node: the official image with runtime LoRA loading switched on.
# Shadowdesk's gateway loads each release's adapter (`/v1/load_lora_adapter`) when it becomes
# candidate or live and unloads it when retired; clients never reach this server, only the gateway.
#   docker build -f docker/vllm.Dockerfile -t shadowdesk-vllm .
ARG VLLM_IMAGE=vllm/vllm-openai:v0.33.0
FROM ${VLLM_IMAGE}
ENV VLLM_ALLOW_RUNTIME_LORA_UPDATING=True HF_HUB_OFFLINE=1
# The base model's HF folder is mounted at /models/base; adapters live on the shared data volume at
# the same path as in the gateway and trainer containers (/data/adapters/<bot>-v<N>/adapter).
VOLUME ["/models", "/data"]
EXPOSE 8000
# LoRA limits: --max-loras adapters in one batch, --max-cpu-loras kept in host memory, --max-lora-rank
# at least the training config's lora_r. Tensor parallelism for large models: add
# --tensor-parallel-size N (one vLLM server per base model).
CMD ["--model", "/models/base", "--served-model-name", "/models/base", "--host", "0.0.0.0", \
     "--port", "8000", "--enable-lora", "--max-loras", "8", "--max-cpu-loras", "32", \
     "--max-lora-rank", "64"]
