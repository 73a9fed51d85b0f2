# One image for every PlanExe-AX service; docker-compose.yml picks the service with the command,
# e.g. `serve coordinator`. Build: docker build -t planexe-ax .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Metadata first, so that a change in src/ does not invalidate the layer cache of the base image.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

# Run as an unprivileged user; /data holds the agents' outputs (a volume in compose).
RUN useradd --create-home --uid 10001 --user-group planexe \
    && mkdir -p /data \
    && chown planexe:planexe /data
USER planexe
ENV PLANEXE_DATA_DIR=/data

EXPOSE 8000
ENTRYPOINT ["planexe-ax"]
CMD ["--help"]
