# One image for the web app and the workers (docker-compose.yml picks the command).
# PyPI's Linux torch wheels carry their CUDA libraries, so this image trains on a GPU when the
# container is given one (compose's device reservation) and on the CPU otherwise.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/peft-studio

COPY pyproject.toml README.md ./
COPY peft_core ./peft_core
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY alembic.ini ./
# editable, so the migrations folder beside the packages is found at run time
RUN pip install -e ".[postgres]"

EXPOSE 7860
CMD ["peft-studio", "run", "--host", "0.0.0.0"]
