# Shadowdesk's training worker on a GPU node: claims `training` jobs from the shared database,
# trains QLoRA / LoRA / full fine-tunes on CUDA, gates them and registers the winners.
#   docker build -f docker/trainer.Dockerfile -t shadowdesk-trainer .
# For several GPUs on one node, run the engine directly under accelerate instead:
#   accelerate launch --config_file docker/accelerate/multi_gpu.yaml -m training --rows ... 
ARG TORCH_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${TORCH_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    SHADOWDESK_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY serving ./serving
COPY training ./training
COPY review_ui ./review_ui
COPY migrations ./migrations
# The image's CUDA torch stays: pip sees it satisfies `torch>=2.4`.
RUN pip install . "bitsandbytes>=0.50" "accelerate>=1.0"
VOLUME ["/models", "/data"]
CMD ["shadowdesk", "worker", "--kind", "training"]
