# The e2e services (tools/e2e/services.yaml): the project's fake Chess.com API
# (tests/fake_chesscom) and Snowflake emulator (tests/snowflake_emulator, its own locked
# lane), on the flows' pinned uv/Python image. Built by tools/e2e/build-services.sh from the
# committed files only; loaded into kind (imagePullPolicy: Never), never pushed.
FROM ghcr.io/astral-sh/uv:0.13.9-python3.11-bookworm-slim
ENV UV_PROJECT_ENVIRONMENT=/opt/emulator \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY tests/snowflake_emulator/pyproject.toml tests/snowflake_emulator/uv.lock tests/snowflake_emulator/
RUN uv sync --locked --project tests/snowflake_emulator --python /usr/local/bin/python3
COPY tests/__init__.py tests/
COPY tests/fake_chesscom/ tests/fake_chesscom/
COPY tests/snowflake_emulator/ tests/snowflake_emulator/
COPY tools/e2e/relay.py tools/e2e/
ENV PATH=/opt/emulator/bin:$PATH
USER 1000:1000
