# Producer and worker image (no torch: the GPU work runs on Modal, or in the worker's local runner
# with the built-in detector).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY boundaries ./boundaries
COPY producer ./producer
COPY worker ./worker
COPY modal_gpu ./modal_gpu
RUN pip install --no-cache-dir .
RUN useradd --create-home app
USER app
CMD ["boundaries", "--help"]
