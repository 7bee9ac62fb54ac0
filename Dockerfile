# The app image: the Celery worker, beat and the one-off migrate service share it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY celery_app ./celery_app
COPY runbooks ./runbooks
COPY migrations ./migrations
COPY tasks.py ./
RUN pip install --no-cache-dir . && useradd --create-home maqsafy
USER maqsafy
CMD ["celery", "-A", "celery_app", "worker", "-Q", "payments,maintenance,ops", "-c", "2"]
