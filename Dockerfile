# The TeamCart server image. docker-compose.yml runs it against PostgreSQL, Redis and the
# Stripe emulator; in production point the TEAMCART_* variables at managed services.
FROM python:3.11-slim
WORKDIR /srv/teamcart
COPY pyproject.toml README.md ./
COPY app ./app
COPY domain ./domain
COPY realtime ./realtime
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system teamcart && mkdir -p /data \
    && chown teamcart /data
USER teamcart
ENV TEAMCART_DATA_DIR=/data
EXPOSE 8000
CMD ["teamcart", "serve", "--host", "0.0.0.0", "--port", "8000", "--demo"]
