# The autoscaler service image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
COPY drf ./drf
COPY backends ./backends
COPY simulations ./simulations
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["autoscaler", "serve"]
