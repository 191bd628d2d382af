# One image for every phq-monitor role; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md alembic.ini ./
COPY cli ./cli
COPY phq ./phq
COPY stream ./stream
COPY scoring ./scoring
COPY training ./training
COPY care ./care
COPY migrations ./migrations
# GPU hosts: build with --build-arg EXTRAS=gpu to add vLLM (torch comes with its CUDA build).
ARG EXTRAS=""
RUN pip install -e ".${EXTRAS:+[$EXTRAS]}"
ENTRYPOINT ["phq"]
